// Directory operations behind the dynamic provider: a tenant's attachments folder on the local
// target (the EFS access point's counterpart). Loaded with require() in the provider host.
import { chmod, mkdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { diffProps, gone, str, type Handler, type Props } from "./handler.ts";

function target(props: Props): string {
  const root = str(props, "root");
  const rel = str(props, "relativePath");
  if (!path.isAbsolute(root)) throw new Error(`root must be absolute: ${root}`);
  if (!/^[a-z]+\/[a-z0-9][a-z0-9-]{0,59}$/.test(rel)) throw new Error(`unsafe relative path: ${rel}`);
  return path.join(root, rel);
}

async function ensure(props: Props): Promise<string> {
  const dir = target(props);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  return dir;
}

export const directoryHandler: Handler = {
  async create(inputs) {
    const dir = await ensure(inputs);
    return { id: dir, outs: { ...inputs, path: dir } };
  },
  diff(_id, olds, news) {
    const oldInputs = { ...olds };
    delete oldInputs.path; // an output, not an input
    return Promise.resolve(diffProps(oldInputs, news, ["root", "relativePath"]));
  },
  async update(_id, _olds, news) {
    const dir = await ensure(news);
    return { outs: { ...news, path: dir } };
  },
  async delete(_id, props) {
    await rm(target(props), { recursive: true, force: true });
  },
  async read(id, props) {
    const dir = target(props);
    let mode: number;
    try {
      const s = await stat(dir);
      if (!s.isDirectory()) return gone();
      mode = s.mode & 0o777;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return gone();
      throw err;
    }
    // Opened up to others: not a declared property, its presence makes the next `up` restore 0700.
    if (mode !== 0o700) return { id, props: { ...props, observed: { mode: mode.toString(8).padStart(4, "0") } } };
    return { id, props };
  },
};
