// SPDX-License-Identifier: Apache-2.0
// placeholder, replaced by the feature table
export async function runCheck(out: NodeJS.WritableStream): Promise<number> {
  out.write('check: not yet\n');
  return 1;
}
