// The parts of package installs that decide before any container starts: what counts as a
// registry package, what a spec names, where a registry is, and what a failure says.
import { describe, expect, it } from "vitest";
import { explainFailure, npmProgram, registryOf, specName, validateSpecs } from "../../src/runs/packages.js";
import { InputError } from "../../src/shared/errors.js";

describe("validateSpecs", () => {
  it.each(["lodash", "zod@^3", "zod@3.23.8", "@scope/name@1.2.3", "@types/node", "left-pad@latest", "a.b_c~d", "react@>=18 <19"])("takes the npm spec %j", (spec) => {
    expect(validateSpecs("npm", [spec])).toEqual([spec]);
  });
  it.each(["https://evil.example/x.tgz", "git+ssh://git@host/x.git", "./local", "../up", "/abs", "file:x", "-g", "--registry=http://x", "lodash;rm", "", "Lodash", "github:user/repo", "x@http://y"])("refuses the npm spec %j", (spec) => {
    expect(() => validateSpecs("npm", [spec])).toThrow(InputError);
  });
  it.each(["requests", "pandas>=2,<3", "rich==13.7.1", "black[jupyter]", "Django~=4.2", "typing_extensions"])("takes the pip spec %j", (spec) => {
    expect(validateSpecs("pip", [spec])).toEqual([spec]);
  });
  it.each(["https://x/y.whl", "./pkg", "-r req.txt", "--index-url=http://x", "pkg @ https://x/y.whl", "pkg; os.system('x')", "git+https://x"])("refuses the pip spec %j", (spec) => {
    expect(() => validateSpecs("pip", [spec])).toThrow(InputError);
  });
  it("needs one to twenty packages", () => {
    expect(() => validateSpecs("npm", [])).toThrow(/name at least one package/);
    expect(() => validateSpecs("npm", Array.from({ length: 21 }, (_, i) => `p${i}`))).toThrow(/at most 20/);
  });
});

describe("specName", () => {
  it.each([
    ["npm", "zod@^3", "zod"],
    ["npm", "@a/b@1.2", "@a/b"],
    ["npm", "@a/b", "@a/b"],
    ["pip", "rich==13", "rich"],
    ["pip", "Typing_Extensions>=4", "typing-extensions"],
    ["pip", "black[jupyter]", "black"],
  ] as const)("%s %j names %j", (manager, spec, name) => {
    expect(specName(manager, spec)).toBe(name);
  });
});

describe("registryOf", () => {
  it("gives the host and port the installer may reach", () => {
    expect(registryOf("https://registry.npmjs.org/").destination).toBe("registry.npmjs.org:443");
    expect(registryOf("http://127.0.0.1:8080/simple/").destination).toBe("127.0.0.1:8080");
    expect(registryOf("http://[::1]:9000/simple/").destination).toBe("[::1]:9000");
    expect(() => registryOf("ftp://x/")).toThrow(InputError);
    expect(() => registryOf("not a url")).toThrow(InputError);
  });
});

describe("explainFailure", () => {
  it("names a package the npm registry does not have", () => {
    expect(explainFailure("npm", "npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/nope-pkg - Not found\nnpm error 404  'nope-pkg@*' is not in this registry.", [])).toMatch(/^nope-pkg@\* does not exist on the registry/);
  });
  it("names a version that does not exist", () => {
    expect(explainFailure("npm", "npm error code ETARGET\nnpm error notarget No matching version found for zod@99.0.0.", [])).toMatch(/^no version of zod@99\.0\.0\. matches/);
  });
  it("says the registry is unreachable, for npm and pip alike", () => {
    expect(explainFailure("npm", "npm error code ECONNREFUSED", [])).toMatch(/could not be reached/);
    expect(explainFailure("pip", "WARNING: Retrying ... ProxyError('Cannot connect to proxy.')", [])).toMatch(/could not be reached/);
    expect(explainFailure("npm", "", ["registry.npmjs.org:443"])).toMatch(/could not be reached/);
  });
  it("says when the quota is full, and quotes the installer's own error line", () => {
    expect(explainFailure("npm", "npm error code ENOSPC\nnpm error syscall write", [])).toMatch(/^the packages do not fit in your storage quota.*\(npm said: code ENOSPC\)$/);
    expect(explainFailure("pip", "ERROR: No matching distribution found for nothing-here", [])).toMatch(/no distribution of nothing-here.*\(pip said: ERROR: No matching distribution found for nothing-here\)/);
  });
});

describe("npmProgram", () => {
  it("turns install scripts off unless the operator allows them, and ends options before the specs", () => {
    const reg = registryOf("https://registry.npmjs.org/");
    expect(npmProgram(reg, { add: ["zod"], remove: [] })).toContain('"--ignore-scripts"');
    expect(npmProgram(reg, { add: ["zod"], remove: [] }, true)).not.toContain("--ignore-scripts");
    expect(npmProgram(reg, { add: ["zod"], remove: [] })).toContain('"--","zod"]');
  });
});
