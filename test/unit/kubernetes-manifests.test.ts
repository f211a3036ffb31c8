// The Kubernetes manifests (deploy/kubernetes/, design on paper): every document validates
// against the Kubernetes schemas (kubernetes-models' validators, compiled from the API's OpenAPI
// schemas), without a cluster; and the properties docs/SCALING.md relies on hold.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { repoRoot } from "../helpers.js";

const dir = join(repoRoot, "deploy", "kubernetes");
const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));

interface Doc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  /** Free-form: the schemas check it. */
  spec?: any;
  rules?: Array<{ verbs: string[] }>;
}

const docs: Array<{ file: string; doc: Doc }> = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(dir, file), "utf8")).map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join("; ")}`);
    return { file, doc: d.toJSON() as Doc };
  }),
);

/** kubernetes-models/<group>/<version>/<Kind> for a document (the core group is "v1"). */
async function modelOf(doc: Doc): Promise<new (d: unknown) => { validate(): void }> {
  const mod = (await import(`kubernetes-models/${doc.apiVersion}/${doc.kind}`)) as Record<string, new (d: unknown) => { validate(): void }>;
  const model = mod[doc.kind];
  if (!model) throw new Error(`no model for ${doc.apiVersion} ${doc.kind}`);
  return model;
}

const find = (kind: string, name: string) => docs.find((d) => d.doc.kind === kind && d.doc.metadata.name === name)!.doc;

describe("the Kubernetes manifests (not yet run against a real cluster)", () => {
  it("say so at the top of every file", () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const f of files) expect(readFileSync(join(dir, f), "utf8").split("\n").slice(0, 3).join(" "), f).toMatch(/NOT YET RUN AGAINST A REAL CLUSTER/);
  });

  it.each(docs.map((d) => [`${d.file}: ${d.doc.kind} ${d.doc.metadata.name}`, d.doc] as const))("%s validates against the schema", async (_name, doc) => {
    const Model = await modelOf(doc);
    expect(() => new Model(doc).validate()).not.toThrow();
  });

  it("a broken document fails validation (the check can fail)", async () => {
    const sts = structuredClone(find("StatefulSet", "codebox-cell"));
    sts.spec.replicas = "three";
    const Model = await modelOf(sts);
    expect(() => new Model(sts).validate()).toThrow(/replicas/);
    const svc = structuredClone(find("Service", "codebox-cells"));
    svc.spec.ports[0].port = "http";
    const Service = await modelOf(svc);
    expect(() => new Service(svc).validate()).toThrow(/port/);
  });

  it("puts everything in the codebox namespace, labelled as part of codebox-mcp", () => {
    for (const { file, doc } of docs) {
      if (doc.kind !== "Namespace") expect(doc.metadata.namespace, `${file} ${doc.kind}`).toBe("codebox");
      expect(doc.metadata.labels?.["app.kubernetes.io/part-of"], `${file} ${doc.kind}`).toBe("codebox-mcp");
    }
  });

  it("cells: one per node, their data kept on scale-down, only the engine sidecar privileged", () => {
    const sts = find("StatefulSet", "codebox-cell");
    const pod = sts.spec.template.spec;
    expect(sts.spec.serviceName).toBe("codebox-cells");
    expect(sts.spec.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: "Retain", whenScaled: "Retain" });
    expect(pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey).toBe("kubernetes.io/hostname");
    expect(pod.initContainers.map((c: { name: string; restartPolicy?: string; securityContext?: { privileged?: boolean } }) => [c.name, c.restartPolicy, c.securityContext?.privileged])).toEqual([["engine", "Always", true]]);
    for (const c of pod.containers) expect(c.securityContext?.privileged ?? false, c.name).toBe(false);
    expect(sts.spec.volumeClaimTemplates.map((v: { metadata: { name: string } }) => v.metadata.name).sort()).toEqual(["data", "engine"]);
    // The engine and the cell see the data claim at the same path (the engine bind-mounts host paths).
    const dataPath = (c: { volumeMounts: Array<{ name: string; mountPath: string }> }) => c.volumeMounts.find((m) => m.name === "data")?.mountPath;
    expect(dataPath(pod.initContainers[0])).toBe(dataPath(pod.containers[0]));
    expect(pod.containers[0].env.find((e: { name: string }) => e.name === "CODEBOX_DATA_DIR").value).toBe(dataPath(pod.containers[0]));
  });

  it("router: read-only access to claims and EndpointSlices, nothing privileged", () => {
    const role = find("Role", "codebox-router");
    expect(role.rules?.length).toBeGreaterThan(0);
    for (const rule of role.rules ?? []) expect(rule.verbs.every((v) => ["get", "list", "watch"].includes(v))).toBe(true);
    const pod = find("Deployment", "codebox-router").spec.template.spec;
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    for (const c of pod.containers) expect(c.securityContext.privileged ?? false).toBe(false);
  });

  it("network: default deny both ways, and every policy selects pods that exist", () => {
    const policies = docs.filter((d) => d.doc.kind === "NetworkPolicy").map((d) => d.doc);
    const deny = policies.find((p) => p.metadata.name === "default-deny")!;
    expect(deny.spec.podSelector).toEqual({});
    expect(deny.spec.policyTypes.sort()).toEqual(["Egress", "Ingress"]);
    const podLabels = docs.filter((d) => ["Deployment", "StatefulSet"].includes(d.doc.kind)).map((d) => d.doc.spec.template.metadata.labels as Record<string, string>);
    for (const p of policies) {
      const sel = (p.spec.podSelector.matchLabels ?? {}) as Record<string, string>;
      expect(
        podLabels.some((l) => Object.entries(sel).every(([k, v]) => l[k] === v)),
        p.metadata.name,
      ).toBe(true);
    }
  });
});
