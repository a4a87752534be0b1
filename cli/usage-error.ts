// A command line the CLI refuses before sending anything (exit code 2). `field` names the
// argument, option or variable at fault, as the API's 400 names a field.
export class UsageError extends Error {
  readonly field: string;

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "UsageError";
    this.field = field;
  }
}
