"""Checks the requests nicip's own cloud clients sent (the simulator's audit
log, a JSON list of {protocol, action, params}) against the official SDKs'
request models: every field must be one the SDK's model for that action
declares, nested objects included, with the declared JSON type (Tencent
models document their types; Zenlayer models only their keys). Legacy API 2.0
has no models: its parameters are checked against the documented names.

Run by tests/providers.rs with the audit file as the only argument. Exits
non-zero on the first field the SDK would not send.
"""
import json
import re
import sys

from tencentcloud.cvm.v20170312 import models as cvm
from tencentcloud.vpc.v20170312 import models as vpc
from zenlayercloud.zec.v20250901 import models as zec

from sdk_models import check_tencent, check_zenlayer


# Legacy API 2.0: the action parameters documented on Tencent Cloud's pages
# (AssignPrivateIpAddresses https://cloud.tencent.com/doc/api/245/4817,
# UnassignPrivateIpAddresses https://cloud.tencent.com/doc/api/245/4819,
# DescribeNetworkInterfaces https://cloud.tencent.com/doc/api/245/4814,
# DescribeVpcTaskResult https://cloud.tencent.com/document/api/215/5094),
# `.n` standing for a 0-based list index; plus the common parameters
# (https://cloud.tencent.com/document/api/597/10084).
LEGACY_COMMON = {"Action", "Region", "Timestamp", "Nonce", "SignatureMethod"}
LEGACY = {
    "AssignPrivateIpAddresses": {"vpcId", "networkInterfaceId", "privateIpAddressSet.n.privateIpAddress",
                                 "privateIpAddressSet.n.primary", "secondaryPrivateIpAddressCount"},
    "UnassignPrivateIpAddresses": {"vpcId", "networkInterfaceId", "privateIpAddress.n"},
    "DescribeNetworkInterfaces": {"vpcId", "networkInterfaceId", "eniName", "eniDescription", "instanceId",
                                  "offset", "limit", "orderField", "orderDirection"},
    "DescribeVpcTaskResult": {"taskId"},
}


def check_legacy(action, params):
    assert action in LEGACY, "legacy action %s is not documented" % action
    for key in params:
        generic = re.sub(r"\.\d+(\.|$)", r".n\1", key)
        assert generic in LEGACY[action] or key in LEGACY_COMMON, "%s: undocumented parameter %s" % (action, key)


entries = json.load(open(sys.argv[1]))
seen = set()
for e in entries:
    protocol, action, params = e["provider"], e["action"], e["params"]
    if protocol == "zenlayer":
        model = getattr(zec, action + "Request", None)
        assert model is not None, "Zenlayer SDK has no action %s" % action
        check_zenlayer(model, params, action)
    elif protocol == "tencent":
        module = cvm if action == "DescribeInstances" else vpc
        model = getattr(module, action + "Request", None)
        assert model is not None, "Tencent SDK has no action %s" % action
        check_tencent(module, model, params, action)
    elif protocol == "tencentLegacy":
        check_legacy(action, params)
    else:
        raise AssertionError("unknown protocol %r" % protocol)
    seen.add((protocol, action))

print("checked %d requests:" % len(entries))
for protocol, action in sorted(seen):
    print("  %s %s" % (protocol, action))
print("ALL CHECKS PASSED")
