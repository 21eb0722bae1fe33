#!/usr/bin/python3
"""Prints kind-config.yaml (argv[1]) with the API server's audit turned on: the
policy directory argv[2] (absolute, on this machine) mounted into the control
plane, and kube-apiserver told to log there. Everything else is left as it is."""

import sys

import yaml

POLICY_DIR = "/etc/kubernetes/relevo-audit"
LOG_DIR = "/var/log/kubernetes/audit"

API_SERVER = {
    "extraArgs": {
        "audit-policy-file": f"{POLICY_DIR}/policy.yaml",
        "audit-log-path": f"{LOG_DIR}/audit.log",
        "audit-log-maxsize": "100",
        "audit-log-maxbackup": "5",
    },
    "extraVolumes": [
        {"name": "relevo-audit-policy", "hostPath": POLICY_DIR, "mountPath": POLICY_DIR,
         "readOnly": True, "pathType": "Directory"},
        {"name": "relevo-audit-log", "hostPath": LOG_DIR, "mountPath": LOG_DIR,
         "pathType": "DirectoryOrCreate"},
    ],
}


def main():
    config_path, policy_dir = sys.argv[1], sys.argv[2]
    with open(config_path) as f:
        config = yaml.safe_load(f)
    control_plane = next(n for n in config["nodes"] if n["role"] == "control-plane")
    control_plane.setdefault("extraMounts", []).append(
        {"hostPath": policy_dir, "containerPath": POLICY_DIR, "readOnly": True})
    patches = config.setdefault("kubeadmConfigPatches", [])
    for i, patch in enumerate(patches):
        parsed = yaml.safe_load(patch)
        if parsed.get("kind") == "ClusterConfiguration":
            if "apiServer" in parsed:
                sys.exit("kind-config.yaml already configures apiServer: merge the audit by hand")
            parsed["apiServer"] = API_SERVER
            patches[i] = yaml.safe_dump(parsed, sort_keys=False)
            break
    else:
        patches.append(yaml.safe_dump({"kind": "ClusterConfiguration", "apiServer": API_SERVER}, sort_keys=False))
    yaml.safe_dump(config, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
