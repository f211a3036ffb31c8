// A fetch for HTTP upstreams whose response bodies cannot grow without bound: an upstream server
// is as untrusted as a sandbox, and the SDK reads whole messages into memory.

type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** Where server-sent events end in `chunk` (the index after each blank line). */
function eventEnds(chunk: Uint8Array): number[] {
  const ends: number[] = [];
  for (let i = 1; i < chunk.length; i++) {
    if (chunk[i] === 10 && (chunk[i - 1] === 10 || (i > 1 && chunk[i - 1] === 13 && chunk[i - 2] === 10))) ends.push(i + 1);
  }
  return ends;
}

/**
 * `base`, with each response body cut off (an error in the stream) past `maxBytes`: a JSON
 * response in total, an event stream per event (it may stay open for the whole session).
 */
export function cappedFetch(maxBytes: number, base: Fetch = fetch): Fetch {
  return async (input, init) => {
    const res = await base(input, init);
    if (!res.body) return res;
    const declared = Number(res.headers.get("content-length") ?? Number.NaN);
    if (Number.isFinite(declared) && declared > maxBytes) {
      await res.body.cancel().catch(() => {});
      throw new Error(`the upstream's response is ${declared} bytes; the limit is ${maxBytes}`);
    }
    const perEvent = (res.headers.get("content-type") ?? "").includes("text/event-stream");
    let count = 0;
    const body = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          let start = 0;
          let over = false;
          for (const end of perEvent ? eventEnds(chunk) : []) {
            over ||= count + (end - start) > maxBytes;
            count = 0;
            start = end;
          }
          count += chunk.length - start;
          if (over || count > maxBytes) {
            controller.error(new Error(`an upstream message passed ${maxBytes} bytes`));
            return;
          }
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}
