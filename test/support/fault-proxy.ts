// A TCP proxy a test puts between a process and a server, to cut the network between them: a
// partition (`sever("blackhole")`: connections stay open, nothing goes through, new ones hang), or
// a refusal (`sever("reset")`: every connection reset, new ones refused). `heal()` lets traffic
// through again (connections black-holed meanwhile are reset: their bytes are gone).
import { createServer, Socket, type Server } from "node:net";

export interface FaultProxy {
  /** Where the process under test connects instead of the server. */
  readonly port: number;
  readonly url: (scheme: string) => string;
  /** Whether traffic goes through now. */
  readonly severed: boolean;
  sever(mode: "blackhole" | "reset"): void;
  heal(): void;
  close(): Promise<void>;
}

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
}

export async function startFaultProxy(target: { host?: string; port: number }): Promise<FaultProxy> {
  const host = target.host ?? "127.0.0.1";
  const pairs = new Set<Pair>();
  // Connections that arrived while black-holed: held open, never forwarded.
  const held = new Set<Socket>();
  let mode: "open" | "blackhole" | "reset" = "open";

  const connectPair = (client: Socket): void => {
    const upstream = new Socket();
    const pair: Pair = { client, upstream };
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop);
    upstream.on("error", drop);
    client.on("close", drop);
    upstream.on("close", drop);
    // Forwarded only while open: black-holed bytes are dropped, as a partition loses them.
    client.on("data", (chunk: Buffer) => {
      if (mode === "open") upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (mode === "open") client.write(chunk);
    });
    upstream.connect(target.port, host);
  };

  const server: Server = createServer((client) => {
    client.on("error", () => undefined);
    if (mode === "reset") {
      client.resetAndDestroy();
      return;
    }
    if (mode === "blackhole") {
      held.add(client);
      client.on("close", () => held.delete(client));
      client.on("data", () => undefined);
      return;
    }
    connectPair(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the fault proxy has no TCP port");
  const port = address.port;

  const resetAll = (): void => {
    for (const p of [...pairs]) {
      pairs.delete(p);
      p.client.resetAndDestroy();
      p.upstream.destroy();
    }
    for (const s of [...held]) {
      held.delete(s);
      s.resetAndDestroy();
    }
  };

  return {
    port,
    url: (scheme) => `${scheme}://127.0.0.1:${port}`,
    get severed() {
      return mode !== "open";
    },
    sever(next) {
      mode = next;
      if (next === "reset") resetAll();
    },
    heal() {
      if (mode === "blackhole") resetAll();
      mode = "open";
    },
    async close() {
      mode = "reset";
      resetAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
