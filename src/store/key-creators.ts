/**
 * Keys made in the dashboard before their creator was recorded: the audit log names who made each one
 * (`key.created` by `member:<e-mail>`), so the migration that adds `api_keys.created_by` fills it in
 * for the unrevoked keys whose creator is still a member of the key's account. The member must have
 * joined before the key was made: an e-mail removed and invited again is a new member, who did not
 * make the older keys. Keys it cannot attribute stay the account's own. The same SQL runs on SQLite and
 * PostgreSQL.
 */
export const KEY_CREATORS_BACKFILL = `
  UPDATE api_keys SET created_by = (
    SELECT m.id FROM audit_log a JOIN members m ON m.account_id = a.account_id AND a.actor = 'member:' || m.email
    WHERE a.account_id = api_keys.account_id AND a.action = 'key.created' AND a.target = 'key:' || api_keys.id
      AND m.created_at <= api_keys.created_at
    LIMIT 1
  )
  WHERE revoked_at IS NULL;`;
