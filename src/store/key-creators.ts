/**
 * Keys made in the dashboard before their creator was recorded: the audit log names who made each one
 * (`key.created` by `member:<e-mail>`), so the migration that adds `api_keys.created_by` fills it in
 * for the unrevoked keys whose creator is still a member of the key's account. The member must have
 * joined before the key was made: an e-mail removed and invited again is a new member, who did not
 * make the older keys. Keys it cannot attribute stay the account's own.
 *
 * One join (UPDATE … FROM, on SQLite and PostgreSQL alike): the audit log's key creations are read
 * once, not once per key, since a big log would otherwise hold the migration (and, on PostgreSQL, the
 * table's lock) for as long as keys × records.
 */
export const KEY_CREATORS_BACKFILL = `
  UPDATE api_keys SET created_by = made.member_id
  FROM (
    SELECT substr(a.target, 5) AS key_id, a.account_id AS account_id, m.id AS member_id, m.created_at AS joined_at
    FROM audit_log a JOIN members m ON m.account_id = a.account_id AND a.actor = 'member:' || m.email
    WHERE a.action = 'key.created' AND a.target LIKE 'key:%'
  ) AS made
  WHERE api_keys.id = made.key_id AND api_keys.account_id = made.account_id
    AND api_keys.revoked_at IS NULL AND made.joined_at <= api_keys.created_at;`;
