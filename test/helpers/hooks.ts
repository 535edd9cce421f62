// SPDX-License-Identifier: Apache-2.0
// Mocha root hooks: undo what each test file created.
import { cleanupAll } from './cleanup';

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await cleanupAll();
  },
};
