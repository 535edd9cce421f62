// SPDX-License-Identifier: Apache-2.0
// Errors that end the program with one line: UsageError (exit status 2) for
// what the user asked, EnvironmentError (exit status 1) for what the machine lacks.

export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export class EnvironmentError extends Error {
  readonly exitCode = 1;
  constructor(message: string) {
    super(message);
    this.name = 'EnvironmentError';
  }
}
