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

  /**
   * The text with any API key cut to its prefix and the admin token replaced, also where a URL spelled one with
   * percent-escapes (`%61lv_live_…`): the text is then shown with its printable escapes decoded.
   */
  without(text: string): string {
    if (text.includes("%")) {
      const decoded = printableDecoded(text);
      if (this.holds(decoded)) return this.withoutPlain(decoded);
    }
    return this.withoutPlain(text);
  }

  private withoutPlain(text: string): string {
    const cut = withoutKeys(text);
    return this.adminToken !== undefined && cut.includes(this.adminToken) ? cut.split(this.adminToken).join("[the admin token]") : cut;
  }
}

/** `%XX` escapes of printable ASCII decoded (keys and admin tokens are printable); the others, and stray `%`, kept. */
function printableDecoded(text: string): string {
  return text.replace(/%([0-9A-Fa-f]{2})/g, (escape, hex: string) => {
    const code = Number.parseInt(hex, 16);
    return code >= 0x21 && code <= 0x7e ? String.fromCharCode(code) : escape;
  });
}
