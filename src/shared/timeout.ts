/** `p`, or a rejection naming what timed out once `ms` have passed (the work itself is not stopped). */
export function withTimeout<T>(p: Promise<T>, ms: number, what = ""): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what ? `${what} ` : ""}timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
