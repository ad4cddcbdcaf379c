import { holdsKey, withoutKeys } from "../gate/credentials.js";

/**
 * Secrets a client may paste where none belongs (an `x-request-id`, a URL path): API keys, known by their shape,
 * and this server's admin token, known by its value. Such text is never echoed as a request id nor logged whole.
 */
export class PastedSecrets {
  constructor(private readonly adminToken: string | undefined) {}

  holds(text: string): boolean {
    return holdsKey(text) || (this.adminToken !== undefined && text.includes(this.adminToken));
  }

  /** The text with any API key cut to its prefix and the admin token replaced. */
  without(text: string): string {
    const cut = withoutKeys(text);
    return this.adminToken !== undefined && cut.includes(this.adminToken) ? cut.split(this.adminToken).join("[the admin token]") : cut;
  }
}
