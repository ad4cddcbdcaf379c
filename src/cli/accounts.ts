/** Account, key and usage commands arrive with the gate; until then none are known. */
export async function runAccountsCommand(_command: string | undefined, _args: string[]): Promise<boolean> {
  return false;
}
