// The CLI's HTTP client against real local HTTP servers: a 503 is tried again with the same
// Idempotency-Key (so a retried provision cannot happen twice), and a redirect is never followed
// (it could carry the token to another host).
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ApiClient, ApiError } from "./api-client.ts";

const servers: Server[] = [];

async function serve(handler: (req: IncomingMessage, res: import("node:http").ServerResponse) => void): Promise<URL> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

const noSleep = () => Promise.resolve();

describe("cli api client", () => {
  it("tries a 503 again with the same Idempotency-Key, then answers", async () => {
    const keys: (string | undefined)[] = [];
    const url = await serve((req, res) => {
      keys.push(req.headers["idempotency-key"] as string | undefined);
      res.writeHead(keys.length < 3 ? 503 : 202, { "content-type": "application/json" });
      res.end(JSON.stringify(keys.length < 3 ? { error: "unavailable", message: "the job queue is unavailable; retry later" } : { jobId: "j1" }));
    });
    const client = new ApiClient({ baseUrl: url, token: "t0ken-value", sleep: noSleep });
    const answer = await client.request("POST", "/v1/tenants", { body: { id: "acme" } });
    expect(answer).toEqual({ status: 202, body: { jobId: "j1" } });
    expect(keys).toHaveLength(3);
    expect(new Set(keys).size).toBe(1);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("gives up on a 503 after a few tries, naming the route", async () => {
    let n = 0;
    const url = await serve((_req, res) => {
      n++;
      res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ error: "unavailable", message: "retry later" }));
    });
    const client = new ApiClient({ baseUrl: url, token: "t", sleep: noSleep });
    const err = await client.request("GET", "/v1/tenants").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).message).toBe("GET /v1/tenants refused: 503 unavailable: retry later");
    expect(n).toBe(6);
  });

  it("does not follow a redirect, so the token never reaches another host", async () => {
    const elsewhere: (string | undefined)[] = [];
    const other = await serve((req, res) => {
      elsewhere.push(req.headers.authorization);
      res.end("{}");
    });
    const url = await serve((_req, res) => res.writeHead(307, { location: `${other.href}v1/tenants` }).end());
    const client = new ApiClient({ baseUrl: url, token: "secret-token-value" });
    const err = await client.request("GET", "/v1/tenants").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(307);
    expect((err as ApiError).message).toContain("set STACKRAIL_URL");
    expect((err as ApiError).message).not.toContain("secret-token-value");
    expect(elsewhere).toEqual([]);
  });

  it("names the field of a 400 that does not start with it", () => {
    const err = new ApiError({
      method: "POST",
      route: "/v1/tenants",
      status: 422,
      code: "idempotency_key_reused",
      message: "this key was used for a different request",
      field: "Idempotency-Key",
    });
    expect(err.message).toBe("POST /v1/tenants refused: 422 idempotency_key_reused: this key was used for a different request (field: Idempotency-Key)");
  });
});
