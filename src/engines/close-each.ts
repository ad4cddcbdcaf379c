/** Closes every one at once and waits for all; the first failure, if any, is thrown once all have ended. */
export async function closeEach(closables: ReadonlyArray<{ close(): Promise<void> }>): Promise<void> {
  const closed = await Promise.allSettled(closables.map((c) => c.close()));
  const failed = closed.find((c): c is PromiseRejectedResult => c.status === "rejected");
  if (failed !== undefined) throw failed.reason;
}
