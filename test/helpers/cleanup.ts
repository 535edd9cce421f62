// SPDX-License-Identifier: Apache-2.0
// Everything a test creates on the machine (namespaces, cgroups, processes)
// registers its undo here; the undos run after each file, and again, last
// resort, when the test process exits, so a failing test leaves nothing behind.
type Undo = () => void | Promise<void>;

const undos: { name: string; undo: Undo }[] = [];

/** Registers an undo; returns a function that runs it now (and only once). */
export function onCleanup(name: string, undo: Undo): () => Promise<void> {
  const entry = { name, undo };
  undos.push(entry);
  return async () => {
    const i = undos.indexOf(entry);
    if (i < 0) return;
    undos.splice(i, 1);
    await entry.undo();
  };
}

/** Runs every registered undo, newest first; reports failures but goes on. */
export async function cleanupAll(): Promise<void> {
  while (undos.length) {
    const { name, undo } = undos.pop()!;
    try {
      await undo();
    } catch (err) {
      process.stderr.write(`cleanup of ${name} failed: ${(err as Error).message}\n`);
    }
  }
}

process.on('exit', () => {
  // only synchronous undos can still run here
  for (const { name, undo } of undos.splice(0).reverse()) {
    try {
      void undo();
    } catch (err) {
      process.stderr.write(`cleanup of ${name} failed: ${(err as Error).message}\n`);
    }
  }
});
