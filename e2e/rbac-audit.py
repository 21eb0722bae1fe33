#!/usr/bin/python3
"""What relevo's operator asked the API server for, set against what
manifests/base/rbac.yaml grants it.

Reads the kind API server's audit log (JSON lines on stdin, see
e2e/kind/audit-policy.yaml) and the ClusterRole in RBAC_YAML. Prints:
  - every request the API server refused (authorization decision "forbid"):
    a rule the code needs and lacks;
  - every verb on a resource the role grants and the operator never used in
    this run: a candidate to trim, or a path the tests did not reach.
With --strict, exits 1 when either list is not empty, except for the grants
named in --allow FILE (one "group/resource verb" per line, then "#" and why it
stays although the run did not use it).

  rbac-audit.py [--strict] [--allow FILE] RBAC_YAML < audit.log
"""

import argparse
import json
import sys

import yaml

OPERATOR = "system:serviceaccount:relevo-system:relevo-operator"


def granted(rbac_path):
    """{(group, resource): {verbs}} of the operator's ClusterRoles (relevo-operator*)."""
    with open(rbac_path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    roles = [d for d in documents if d.get("kind") == "ClusterRole" and d["metadata"]["name"].startswith("relevo-operator")]
    grants = {}
    for rule in (rule for role in roles for rule in role["rules"]):
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                grants.setdefault((group, resource), set()).update(rule.get("verbs", []))
    return grants


def used(lines):
    """({(group, resource): {verbs}} allowed, [(group, resource, verb, namespace, name)] refused)."""
    allowed, refused = {}, []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        # A watch is long-running: its ResponseStarted is what a watch still open shows.
        if event.get("user", {}).get("username") != OPERATOR or event.get("stage") not in (
            "ResponseStarted",
            "ResponseComplete",
        ):
            continue
        ref = event.get("objectRef") or {}
        if not ref.get("resource"):
            continue  # a non-resource URL (/version, /api)
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        key = (ref.get("apiGroup", ""), resource)
        decision = event.get("annotations", {}).get("authorization.k8s.io/decision")
        if decision == "forbid":
            refused.append((*key, event.get("verb"), ref.get("namespace", ""), ref.get("name", "")))
        else:
            allowed.setdefault(key, set()).add(event.get("verb"))
    return allowed, refused


def allowances(path):
    if not path:
        return {}
    reasons = {}
    with open(path) as f:
        for line in f:
            grant, _, why = line.partition("#")
            if grant.strip():
                reasons[grant.strip()] = why.strip()
    return reasons


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("rbac")
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--allow")
    args = parser.parse_args()
    grants = granted(args.rbac)
    allowed, refused = used(sys.stdin)
    allow = allowances(args.allow)
    requests = sum(len(v) for v in allowed.values())
    print(f"rbac audit: {len(allowed)} resources used with {requests} distinct verbs; {len(refused)} refused requests")
    for group, resource, verb, namespace, name in sorted(set(refused)):
        print(f"  REFUSED {group or 'core'}/{resource} {verb} ({namespace}/{name}): the role lacks it")
    unused = []
    for (group, resource), verbs in sorted(grants.items()):
        for verb in sorted(verbs - allowed.get((group, resource), set())):
            grant = f"{group or 'core'}/{resource} {verb}"
            if grant in allow:
                print(f"  unused, kept: {grant} ({allow[grant]})")
            else:
                unused.append(grant)
                print(f"  UNUSED {grant}: granted, never used in this run")
    for (group, resource), verbs in sorted(allowed.items()):
        beyond = verbs - grants.get((group, resource), set())
        if beyond:
            # Allowed by another binding (the instances' Role is not the operator's).
            print(f"  used beyond the ClusterRole: {group or 'core'}/{resource} {sorted(beyond)}")
    if args.strict and (refused or unused):
        sys.exit(1)


if __name__ == "__main__":
    main()
