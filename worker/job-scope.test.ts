// The fencing helpers of worker/job-scope.ts: a store's write methods wrapped so that a job whose
// worker lost its lock writes nothing; reads and calls outside a job go straight through.
import { describe, expect, it } from "vitest";
import { assertJobOwned, fenced, LeaseLostError, runInJobScope } from "./job-scope.ts";

class Store {
  readonly #rows = new Map<string, string>();
  put(id: string, value: string): Promise<void> {
    this.#rows.set(id, value);
    return Promise.resolve();
  }
  get(id: string): Promise<string | undefined> {
    return Promise.resolve(this.#rows.get(id));
  }
}

describe("fenced()", () => {
  it("refuses a write of a job whose lock is lost, and lets reads, owned writes and writes outside a job through", async () => {
    const store = fenced(new Store(), ["put"]);
    let owned = true;
    const scope = { jobId: "j1", assertOwned: () => (owned ? Promise.resolve() : Promise.reject(new LeaseLostError("lost (test)"))) };
    await runInJobScope(scope, () => store.put("a", "1"));
    owned = false;
    await expect(runInJobScope(scope, () => store.put("a", "2"))).rejects.toBeInstanceOf(LeaseLostError);
    expect(await runInJobScope(scope, () => store.get("a"))).toBe("1");
    await store.put("b", "outside a job");
    expect(await store.get("b")).toBe("outside a job");
    await expect(assertJobOwned()).resolves.toBeUndefined();
    expect(new LeaseLostError("x")).toMatchObject({ code: "lease_lost", fate: "retry" });
  });
});
