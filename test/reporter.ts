// SPDX-License-Identifier: Apache-2.0
// Mocha's spec output, then one plain line for CI: "N passed, N failed".
// A skipped test counts as failed: every test here can run on the CI machine.
import Mocha from 'mocha';

const { EVENT_RUN_END } = Mocha.Runner.constants;

class SpecWithSummary extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    runner.once(EVENT_RUN_END, () => {
      const s = runner.stats!;
      process.stdout.write(`\n${s.passes} passed, ${s.failures + s.pending} failed\n`);
    });
  }
}

export = SpecWithSummary;
