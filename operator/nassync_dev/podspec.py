"""Turning a pod spec into what a process needs: volumes on disk, env, identity.

This is the part of a kubelet the process node keeps: secrets and configMaps
are written into a per-pod directory (never onto the command line), hostPath
and PV-backed claims are bound from the host, the service-account token comes
from the TokenRequest API, and env references are resolved the way the
kubelet resolves them. Anything the node cannot satisfy yet (a Secret not
created, a claim not bound) raises `NotReady` so the pod stays Pending and is
retried, as on a real node.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from nassync.api.common import dig
from nassync_dev.sandbox import Mount


class NotReady(Exception):
    """A dependency of the pod is not there yet; retry later."""


@dataclass(frozen=True)
class NodeInfo:
    name: str
    apiserver_host: str
    apiserver_port: int
    extra_path: str  # host binaries stand in for the image's
    # Host directories the stand-in binaries live in that the sandbox would
    # otherwise hide (a checkout under /tmp): bound read-only at the same path.
    host_binds: tuple[str, ...] = ()


def _write_files(target: Path, files: dict[str, bytes], mode: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o755)
    for rel, data in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)


def _select(data: dict[str, bytes], items: list[dict[str, Any]] | None,
            where: str) -> dict[str, bytes]:
    if not items:
        return data
    picked = {}
    for item in items:
        if item["key"] not in data:
            raise NotReady(f"{where} has no key {item['key']!r}")
        picked[item["path"]] = data[item["key"]]
    return picked


class PodEnvironment:
    """Resolves one pod's volumes and env against the API."""

    def __init__(self, api: client.CoreV1Api, pod: dict[str, Any], *, pod_dir: Path,
                 node: NodeInfo) -> None:
        self.api = api
        self.pod = pod
        self.ns = pod["metadata"]["namespace"]
        self.pod_dir = pod_dir
        self.node = node

    # -- objects ------------------------------------------------------------
    def _read(self, kind: str, name: str, optional: bool) -> Any | None:
        """Read a Secret or ConfigMap; a missing one keeps the pod waiting unless optional."""
        reader = (self.api.read_namespaced_secret if kind == "secret"
                  else self.api.read_namespaced_config_map)
        try:
            return reader(name, self.ns)
        except ApiException as e:
            if e.status == 404:
                if optional:
                    return None
                raise NotReady(f"{kind} {self.ns}/{name} not found") from e
            raise

    def _secret(self, name: str, optional: bool) -> dict[str, bytes] | None:
        secret = self._read("secret", name, optional)
        if secret is None:
            return None
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def _config_map(self, name: str, optional: bool) -> dict[str, bytes] | None:
        cm = self._read("configmap", name, optional)
        if cm is None:
            return None
        out = {k: v.encode() for k, v in (cm.data or {}).items()}
        out.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        return out

    def field(self, path: str) -> str:
        meta = self.pod["metadata"]
        simple = {
            "metadata.name": meta["name"], "metadata.namespace": self.ns,
            "metadata.uid": meta.get("uid", ""), "spec.nodeName": self.node.name,
            "spec.serviceAccountName": dig(self.pod, "spec", "serviceAccountName") or "",
            "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
        }
        if path in simple:
            return str(simple[path])
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        raise NotReady(f"fieldRef {path} is not supported by the process node")

    def _token(self, source: dict[str, Any]) -> bytes:
        sa = dig(self.pod, "spec", "serviceAccountName") or "default"
        audience = source.get("audience")
        spec = client.V1TokenRequestSpec(
            audiences=[audience] if audience else [],
            expiration_seconds=source.get("expirationSeconds", 3607),
            bound_object_ref=client.V1BoundObjectReference(
                kind="Pod", api_version="v1", name=self.pod["metadata"]["name"],
                uid=self.pod["metadata"]["uid"]),
        )
        try:
            resp = self.api.create_namespaced_service_account_token(
                sa, self.ns, client.AuthenticationV1TokenRequest(spec=spec))
        except ApiException as e:
            raise NotReady(f"token for serviceaccount {self.ns}/{sa}: {e.reason}") from e
        return str(resp.status.token).encode()

    # -- volumes ------------------------------------------------------------
    def volume_source(self, vol: dict[str, Any]) -> str:
        """Materialise one pod volume and return its host path."""
        name = vol["name"]
        local = self.pod_dir / "volumes" / name
        if "hostPath" in vol:
            return self._host_path(vol["hostPath"])
        if "emptyDir" in vol:
            local.mkdir(parents=True, exist_ok=True)
            local.chmod(0o777)
            return str(local)
        for key, name_key, read in (("secret", "secretName", self._secret),
                                    ("configMap", "name", self._config_map)):
            if key in vol:
                src = vol[key]
                data = read(src[name_key], bool(src.get("optional")))
                files = _select(data or {}, src.get("items"), f"{key} {src[name_key]}")
                _write_files(local, files, src.get("defaultMode", 0o644))
                return str(local)
        if "projected" in vol:
            _write_files(local, self._projected(vol["projected"]),
                         vol["projected"].get("defaultMode", 0o644))
            return str(local)
        if "downwardAPI" in vol:
            files = {i["path"]: self.field(i["fieldRef"]["fieldPath"]).encode()
                     for i in vol["downwardAPI"].get("items", []) if "fieldRef" in i}
            _write_files(local, files, vol["downwardAPI"].get("defaultMode", 0o644))
            return str(local)
        if "persistentVolumeClaim" in vol:
            return self._claim(vol["persistentVolumeClaim"]["claimName"])
        raise NotReady(f"volume {name!r}: this volume type is not supported by the process node")

    def _projected(self, projected: dict[str, Any]) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for source in projected.get("sources", []):
            if "serviceAccountToken" in source:
                files[source["serviceAccountToken"]["path"]] = self._token(
                    source["serviceAccountToken"])
            elif "configMap" in source:
                src = source["configMap"]
                data = self._config_map(src["name"], bool(src.get("optional")))
                files.update(_select(data or {}, src.get("items"), f"configmap {src['name']}"))
            elif "secret" in source:
                src = source["secret"]
                data = self._secret(src["name"], bool(src.get("optional")))
                files.update(_select(data or {}, src.get("items"), f"secret {src['name']}"))
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items", []):
                    if "fieldRef" in item:
                        files[item["path"]] = self.field(item["fieldRef"]["fieldPath"]).encode()
        return files

    @staticmethod
    def _host_path(src: dict[str, Any]) -> str:
        path, kind = src["path"], src.get("type", "")
        if kind in ("DirectoryOrCreate", ""):
            if not os.path.exists(path):
                os.makedirs(path, mode=0o755, exist_ok=True)
        elif kind == "FileOrCreate":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).touch(exist_ok=True)
        elif kind == "Directory" and not os.path.isdir(path):
            raise NotReady(f"hostPath {path} is not a directory")
        elif kind == "File" and not os.path.isfile(path):
            raise NotReady(f"hostPath {path} is not a file")
        return str(path)

    def _claim(self, claim: str) -> str:
        try:
            pvc = self.api.read_namespaced_persistent_volume_claim(claim, self.ns)
        except ApiException as e:
            raise NotReady(f"persistentvolumeclaim {self.ns}/{claim}: {e.reason}") from e
        if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
            raise NotReady(f"persistentvolumeclaim {self.ns}/{claim} is not bound yet")
        pv = self.api.read_persistent_volume(pvc.spec.volume_name)
        if pv.spec.host_path is not None:
            return self._host_path({"path": pv.spec.host_path.path,
                                    "type": pv.spec.host_path.type or ""})
        if pv.spec.local is not None:
            return str(pv.spec.local.path)
        raise NotReady(f"persistentvolume {pv.metadata.name}: only hostPath and local "
                       "volumes can be mounted by the process node")

    def mounts(self, container: dict[str, Any], sources: dict[str, str]) -> list[Mount]:
        out = []
        for vm in container.get("volumeMounts", []):
            src = sources[vm["name"]]
            if vm.get("subPath"):
                src = os.path.join(src, vm["subPath"])
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
            out.append(Mount(src, vm["mountPath"], bool(vm.get("readOnly"))))
        return out

    # -- env ----------------------------------------------------------------
    def env(self, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {
            "PATH": f"{self.node.extra_path}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME": self.pod["metadata"]["name"],
            "HOME": "/tmp",
            "KUBERNETES_SERVICE_HOST": self.node.apiserver_host,
            "KUBERNETES_SERVICE_PORT": str(self.node.apiserver_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.node.apiserver_port),
            "LANG": "C.UTF-8",
        }
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                data = self._secret(source["secretRef"]["name"],
                                    bool(source["secretRef"].get("optional")))
            else:
                data = self._config_map(source["configMapRef"]["name"],
                                        bool(source["configMapRef"].get("optional")))
            env.update({prefix + k: v.decode() for k, v in (data or {}).items()})
        for var in container.get("env", []):
            env[var["name"]] = self._env_value(var, env)
        return env

    def _env_value(self, var: dict[str, Any], env: dict[str, str]) -> str:
        if "value" in var:
            return expand(var["value"] or "", env)
        ref = var.get("valueFrom") or {}
        if "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            data = self._secret(r["name"], bool(r.get("optional"))) or {}
            if r["key"] not in data and not r.get("optional"):
                raise NotReady(f"secret {r['name']} has no key {r['key']!r}")
            return data.get(r["key"], b"").decode()
        if "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            data = self._config_map(r["name"], bool(r.get("optional"))) or {}
            if r["key"] not in data and not r.get("optional"):
                raise NotReady(f"configmap {r['name']} has no key {r['key']!r}")
            return data.get(r["key"], b"").decode()
        if "fieldRef" in ref:
            return self.field(ref["fieldRef"]["fieldPath"])
        return ""

    def identity(self, container: dict[str, Any]) -> tuple[tuple[int, int] | None, list[int]]:
        pod_sc = dig(self.pod, "spec", "securityContext") or {}
        sc = container.get("securityContext") or {}
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        groups = list(pod_sc.get("supplementalGroups") or [])
        if pod_sc.get("fsGroup") is not None:
            groups.append(pod_sc["fsGroup"])
        if uid is None:
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
                raise NotReady("runAsNonRoot is set but no runAsUser: the process node has "
                               "no image to take a user from")
            return None, groups
        return (int(uid), int(gid if gid is not None else uid)), groups


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: unknown references stay as written, `$$` escapes."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _REF.sub(sub, text)
