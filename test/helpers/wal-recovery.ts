import { spawn, spawnSync } from "node:child_process";

/** Whether python3 is here to play the other process (it takes POSIX locks, which Node cannot). */
export const canFakeRecovery = spawnSync("python3", ["--version"]).status === 0;

// WAL_WRITE_LOCK and WAL_RECOVER_LOCK (bytes 120 and 122 of the -shm file) held, and the two copies of the
// WAL index header made to differ: what a process rebuilding the index looks like to every other connection.
const SCRIPT = `
import fcntl, os, struct, sys
fd = os.open(sys.argv[1] + "-shm", os.O_RDWR)
def lock(offset, kind): fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack("hhqqi", kind, 0, offset, 1, 0))
lock(120, fcntl.F_WRLCK); lock(122, fcntl.F_WRLCK)
byte = os.pread(fd, 1, 64)
os.pwrite(fd, bytes([byte[0] ^ 0xff]), 64)
print("held", flush=True)
sys.stdin.readline()
os.pwrite(fd, byte, 64)
lock(122, fcntl.F_UNLCK); lock(120, fcntl.F_UNLCK)
`;

/**
 * Another process seen recovering the SQLite file's WAL index until `release`: meanwhile a connection
 * that does not wait gets SQLITE_BUSY_RECOVERY even for a read.
 */
export async function fakeWalRecovery(databaseFile: string): Promise<{ release: () => Promise<void> }> {
  const child = spawn("python3", ["-c", SCRIPT, databaseFile], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve, reject) =>
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`the recovery stand-in exited with ${code}`)))),
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => (chunk.toString().includes("held") ? resolve() : undefined));
    exited.then(() => reject(new Error("the recovery stand-in exited before holding")), reject);
  });
  return {
    release: async () => {
      child.stdin.end("\n");
      await exited;
    },
  };
}
