// Generates a credential once, at create time, inside the provider host; the value is stored only
// as a Pulumi secret (the resource marks `result` secret). A program generating it itself would
// produce a new value on every run.
import { randomInt } from "node:crypto";
import { diffProps, num, type Handler } from "./handler.ts";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

export function generatePassword(length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) out += ALPHABET[randomInt(ALPHABET.length)];
  return out;
}

export const passwordHandler: Handler = {
  create(inputs) {
    const length = Math.trunc(num(inputs, "length"));
    if (length < 16 || length > 128) throw new Error("password length must be between 16 and 128");
    return Promise.resolve({ id: `pw-${generatePassword(12)}`, outs: { ...inputs, result: generatePassword(length) } });
  },
  diff(_id, olds, news) {
    const oldInputs = { ...olds };
    delete oldInputs.result; // the generated value, an output
    // Any change of the inputs (length, rotation marker) rolls a new value.
    const d = diffProps(oldInputs, news, Object.keys({ ...oldInputs, ...news }));
    return Promise.resolve(d);
  },
  update(_id, olds) {
    return Promise.resolve({ outs: olds });
  },
  delete() {
    return Promise.resolve();
  },
  read(id, props) {
    // Nothing outside the state to compare with: the value lives only there.
    return Promise.resolve({ id, props });
  },
};
