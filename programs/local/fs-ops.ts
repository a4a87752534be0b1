// Directory operations behind the dynamic provider: a tenant's attachments folder on the local
// target (the EFS access point's counterpart). Loaded with require() in the provider host.
// A folder that exists is used only when its owner marker names this stack: markers live in
// `<root>/.owners/<scope>/<key>` (0600, in 0700 folders), outside every tenant's folder.
import { chmod, lstat, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { diffProps, gone, notRecordedError, ownedByOtherError, ownerOf, str, type Handler, type Props } from "./handler.ts";

interface Place {
  /** The tenant's folder. */
  dir: string;
  /** Its owner marker. */
  marker: string;
  /** `<scope>/<key>`, as in messages. */
  rel: string;
}

function place(props: Props): Place {
  const root = str(props, "root");
  const rel = str(props, "relativePath");
  if (!path.isAbsolute(root)) throw new Error(`root must be absolute: ${root}`);
  if (!/^[a-z]+\/[a-z0-9][a-z0-9-]{0,59}$/.test(rel)) throw new Error(`unsafe relative path: ${rel}`);
  // `.owners` starts with a dot: no scope folder ([a-z]+) can be it.
  return { dir: path.join(root, rel), marker: path.join(root, ".owners", rel), rel };
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

async function recordedOwner(marker: string): Promise<string | undefined> {
  try {
    return (await readFile(marker, "utf8")).trim();
  } catch (err) {
    if (code(err) === "ENOENT") return undefined;
    throw err;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (err) {
    if (code(err) === "ENOENT") return false;
    throw err;
  }
}

async function markerFolder(marker: string): Promise<void> {
  const dir = path.dirname(marker);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  await chmod(path.dirname(dir), 0o700);
}

/** Records `owner` only if nothing is recorded; false when somebody else won the race. */
async function recordNew(marker: string, owner: string): Promise<boolean> {
  await markerFolder(marker);
  try {
    await writeFile(marker, `${owner}\n`, { flag: "wx", mode: 0o600 });
    return true;
  } catch (err) {
    if (code(err) !== "EEXIST") throw err;
    return (await recordedOwner(marker)) === owner;
  }
}

async function replaceRecord(marker: string, owner: string): Promise<void> {
  await markerFolder(marker);
  const tmp = `${marker}.${process.pid}.tmp`;
  await writeFile(tmp, `${owner}\n`, { mode: 0o600 });
  await rename(tmp, marker);
}

function required(props: Props): string {
  const owner = ownerOf(props);
  if (owner === undefined) throw new Error("input owner must be <key>/<token>");
  return owner;
}

/** The folder itself, private; a link or a file in its place is never followed or adopted. */
async function ensureFolder(p: Place): Promise<void> {
  await mkdir(path.dirname(p.dir), { recursive: true, mode: 0o700 });
  try {
    await mkdir(p.dir, { mode: 0o700 });
  } catch (err) {
    if (code(err) !== "EEXIST") throw err;
  }
  if (!(await lstat(p.dir)).isDirectory()) throw notRecordedError("directory", p.rel);
  await chmod(p.dir, 0o700);
}

export const directoryHandler: Handler = {
  async create(inputs) {
    const p = place(inputs);
    const owner = required(inputs);
    const current = await recordedOwner(p.marker);
    if (current !== undefined && current !== owner) throw ownedByOtherError("directory", p.rel);
    if (current === undefined) {
      // Nothing recorded: the folder must not exist, and is made by this call (not found).
      if (await exists(p.dir)) throw notRecordedError("directory", p.rel);
      if (!(await recordNew(p.marker, owner))) throw ownedByOtherError("directory", p.rel);
      await mkdir(path.dirname(p.dir), { recursive: true, mode: 0o700 });
      try {
        await mkdir(p.dir, { mode: 0o700 });
      } catch (err) {
        if (code(err) !== "EEXIST") throw err;
        await rm(p.marker, { force: true });
        throw notRecordedError("directory", p.rel);
      }
    }
    // Recorded as this stack's: an earlier attempt of the same stack is picked up.
    await ensureFolder(p);
    return { id: p.dir, outs: { ...inputs, path: p.dir } };
  },
  diff(_id, olds, news) {
    const oldInputs = { ...olds };
    delete oldInputs.path; // an output, not an input
    // `owner` is not a replace key: adding it to an existing stack records it in place.
    return Promise.resolve(diffProps(oldInputs, news, ["root", "relativePath"]));
  },
  async update(_id, olds, news) {
    const p = place(news);
    const owner = required(news);
    const current = await recordedOwner(p.marker);
    if (current === undefined) {
      // The state says this stack made it (stacks from before owners): record it now.
      if (!(await recordNew(p.marker, owner))) throw ownedByOtherError("directory", p.rel);
    } else if (current !== owner) {
      if (current !== ownerOf(olds)) throw ownedByOtherError("directory", p.rel);
      await replaceRecord(p.marker, owner);
    }
    await ensureFolder(p);
    return { outs: { ...news, path: p.dir } };
  },
  async delete(_id, props) {
    const p = place(props);
    const current = await recordedOwner(p.marker);
    if (current !== undefined && current !== ownerOf(props)) throw ownedByOtherError("directory", p.rel);
    await rm(p.dir, { recursive: true, force: true });
    await rm(p.marker, { force: true });
  },
  async read(id, props) {
    const dir = place(props).dir;
    let mode: number;
    try {
      const s = await stat(dir);
      if (!s.isDirectory()) return gone();
      mode = s.mode & 0o777;
    } catch (err) {
      if (code(err) === "ENOENT") return gone();
      throw err;
    }
    // Opened up to others: not a declared property, its presence makes the next `up` restore 0700.
    if (mode !== 0o700) return { id, props: { ...props, observed: { mode: mode.toString(8).padStart(4, "0") } } };
    return { id, props };
  },
};
