"""Drives the official Zenlayer Python SDK (zenlayercloud-sdk-python) against
nicip's simulated cloud. Only the endpoint and scheme are overridden.

Run by tests/cloudsim.rs with CLOUDSIM_ENDPOINT=127.0.0.1:PORT and the world
in tests/support/cloudsim_world.yaml. Exits non-zero on the first failed check.
"""
import os
import json
import time

from zenlayercloud.common.config import Config
from zenlayercloud.common.credential import Credential, TokenCredential
from zenlayercloud.common.excpetion.zenlayer_cloud_sdk_exception import ZenlayerCloudSdkException
from zenlayercloud.zec.v20250901 import models
from zenlayercloud.zec.v20250901.zec_client import ZecClient

from sim_control import hold_async, set_faults
from sdk_models import check_zenlayer

ENDPOINT = os.environ["CLOUDSIM_ENDPOINT"]
CONFIG = Config(scheme="http", domain=ENDPOINT)
client = ZecClient(Credential("zl-test-key", "zl-test-password"), CONFIG)
RESPONSES_CHECKED = set()


def checked(api_call):
    """Every answer must survive the SDK's response model field for field."""
    def call(action, request, *args, **kwargs):
        response = api_call(action, request, *args, **kwargs)
        check_zenlayer(getattr(models, action + "Response"), response, action)
        RESPONSES_CHECKED.add(action)
        return response
    return call


client._api_call = checked(client._api_call)


def req(cls, **fields):
    r = cls()
    for k, v in fields.items():
        setattr(r, k, v)
    return r


def expect_error(code, call, *args):
    try:
        call(*args)
    except ZenlayerCloudSdkException as e:
        assert e.code == code, "expected %s, got %s (%s)" % (code, e.code, e.message)
        assert e.request_id and e.request_id.startswith("T"), e.request_id
        assert e.message, "errors carry a message"
        return
    raise AssertionError("expected error %s" % code)


def describe(nic_id):
    resp = client.DescribeNetworkInterfaces(req(models.DescribeNetworkInterfacesRequest, nicIds=[nic_id]))
    assert resp.totalCount == 1, resp
    return resp.dataSet[0]


# The fields the controller reads, as the SDK's models see them.
nic = describe("nic-zl-b")
assert (nic.nicId, nic.vpcId, nic.subnetId) == ("nic-zl-b", "vpc-zl-1", "subnet-zl-v4"), nic
assert (nic.status, nic.instanceId, nic.primaryIpv6, nic.ipv6Cidr) == ("AVAILABLE", None, None, None), nic
attached = describe("nic-zl-primary")
assert (attached.status, attached.instanceId) == ("USED", "ins-zl-run"), attached
assert describe("nic-zl-pending").status == "PENDING"
gone = client.DescribeNetworkInterfaces(req(models.DescribeNetworkInterfacesRequest, nicIds=["nic-zl-gone"]))
assert (gone.totalCount, gone.dataSet) == (0, []), gone

# Assign explicit addresses, then a count; describe; unassign.
r = client.BatchAssignNetworkInterfaceIpv4(
    req(models.BatchAssignNetworkInterfaceIpv4Request, nicId="nic-zl-b", ipAddresses=["10.0.0.40", "10.0.0.41"]))
assert r.ipAddresses == ["10.0.0.40", "10.0.0.41"], r.ipAddresses
assert r.requestId.startswith("T")
r = client.BatchAssignNetworkInterfaceIpv4(
    req(models.BatchAssignNetworkInterfaceIpv4Request, nicId="nic-zl-b", ipAddressCount=1))
assert len(r.ipAddresses) == 1
nic = describe("nic-zl-b")
assert nic.secondaryIpv4s == ["10.0.0.21", "10.0.0.40", "10.0.0.41"] + r.ipAddresses, nic.secondaryIpv4s
assert nic.primaryIpv4 == "10.0.0.20" and nic.status == "AVAILABLE"
client.UnassignNetworkInterfaceIpv4(
    req(models.UnassignNetworkInterfaceIpv4Request, nicId="nic-zl-b", ipAddresses=["10.0.0.40"]))
assert "10.0.0.40" not in describe("nic-zl-b").secondaryIpv4s
# The single-address companion action, same rules.
client.AssignNetworkInterfaceIpv4(req(models.AssignNetworkInterfaceIpv4Request, nicId="nic-zl-b", ipAddress="10.0.0.40"))
assert "10.0.0.40" in describe("nic-zl-b").secondaryIpv4s
expect_error("INVALID_SUBNET_PRIVATE_IPV4_IN_USED", client.AssignNetworkInterfaceIpv4,
             req(models.AssignNetworkInterfaceIpv4Request, nicId="nic-zl-a", ipAddress="10.0.0.40"))
client.UnassignNetworkInterfaceIpv4(
    req(models.UnassignNetworkInterfaceIpv4Request, nicId="nic-zl-b", ipAddresses=["10.0.0.40"]))

# Error cases, with the documented codes.
expect_error("INVALID_IP_OUT_OF_RANGE", client.BatchAssignNetworkInterfaceIpv4,
             req(models.BatchAssignNetworkInterfaceIpv4Request, nicId="nic-zl-b", ipAddresses=["192.168.0.9"]))
expect_error("INVALID_IP_NETWORK_ADDRESS", client.BatchAssignNetworkInterfaceIpv4,
             req(models.BatchAssignNetworkInterfaceIpv4Request, nicId="nic-zl-b", ipAddresses=["10.0.0.0"]))
expect_error("INVALID_IP_BROADCAST_ADDRESS", client.BatchAssignNetworkInterfaceIpv4,
             req(models.BatchAssignNetworkInterfaceIpv4Request, nicId="nic-zl-b", ipAddresses=["10.0.0.255"]))
expect_error("INVALID_IP_FIRST_ADDRESS", client.BatchAssignNetworkInterfaceIpv4,
             req(models.BatchAssignNetworkInterfaceIpv4Request, nicId="nic-zl-b", ipAddresses=["10.0.0.1"]))
expect_error("INVALID_SUBNET_PRIVATE_IPV4_IN_USED", client.BatchAssignNetworkInterfaceIpv4,
             req(models.BatchAssignNetworkInterfaceIpv4Request, nicId="nic-zl-a", ipAddresses=["10.0.0.41"]))
expect_error("OPERATION_DENIED_NIC_ATTACH_LAN_IP_EXCEED_LIMIT", client.BatchAssignNetworkInterfaceIpv4,
             req(models.BatchAssignNetworkInterfaceIpv4Request, nicId="nic-zl-a", ipAddressCount=9))
expect_error("INVALID_NIC_NOT_FOUND", client.BatchAssignNetworkInterfaceIpv4,
             req(models.BatchAssignNetworkInterfaceIpv4Request, nicId="nic-zl-nope", ipAddressCount=1))
expect_error("INVALID_NIC_STATUS", client.BatchAssignNetworkInterfaceIpv4,
             req(models.BatchAssignNetworkInterfaceIpv4Request, nicId="nic-zl-pending", ipAddressCount=1))
expect_error("INVALID_NIC_PRIMARY_IP_CANT_DETACH", client.UnassignNetworkInterfaceIpv4,
             req(models.UnassignNetworkInterfaceIpv4Request, nicId="nic-zl-b", ipAddresses=["10.0.0.20"]))

# IPv6: private subnet, then the billing rules of a public one.
client.AssignNetworkInterfaceIpv6(req(models.AssignNetworkInterfaceIpv6Request, nicId="nic-zl-dual"))
nic = describe("nic-zl-dual")
assert nic.primaryIpv6 == "2001:db8:1::1" and nic.ipv6Cidr == "2001:db8:1::/96", (nic.primaryIpv6, nic.ipv6Cidr)
expect_error("INVALID_NIC_IPV6_EXISTS", client.AssignNetworkInterfaceIpv6,
             req(models.AssignNetworkInterfaceIpv6Request, nicId="nic-zl-dual"))
expect_error("INVALID_SUBNET_IPSTACK_NOT_SUPPORT", client.AssignNetworkInterfaceIpv6,
             req(models.AssignNetworkInterfaceIpv6Request, nicId="nic-zl-a"))
expect_error("INVALID_PARAMETER_BANDWIDTH_ERROR", client.AssignNetworkInterfaceIpv6,
             req(models.AssignNetworkInterfaceIpv6Request, nicId="nic-zl-pub", internetChargeType="ByBandwidth"))
expect_error("INVALID_PARAMETER_FLOW_TRAFFIC_PACKAGE", client.AssignNetworkInterfaceIpv6,
             req(models.AssignNetworkInterfaceIpv6Request, nicId="nic-zl-pub", internetChargeType="ByTrafficPackage",
                 bandwidth=10, packageSize=0.25))
client.AssignNetworkInterfaceIpv6(req(models.AssignNetworkInterfaceIpv6Request, nicId="nic-zl-pub",
                                      internetChargeType="ByBandwidth", bandwidth=50))
client.UnassignNetworkInterfaceIpv6(req(models.UnassignNetworkInterfaceIpv6Request, nicId="nic-zl-dual"))
assert describe("nic-zl-dual").primaryIpv6 is None

# Attach (ATTACHING -> USED), detach (DETACHING -> AVAILABLE).
hold_async(True)
client.AttachNetworkInterface(req(models.AttachNetworkInterfaceRequest, nicId="nic-zl-a", instanceId="ins-zl-run"))
assert describe("nic-zl-a").status == "ATTACHING"
hold_async(False)
expect_error("INVALID_NIC_INSTANCE_REGION_MISMATCH", client.AttachNetworkInterface,
             req(models.AttachNetworkInterfaceRequest, nicId="nic-zl-b", instanceId="ins-zl-eu"))
expect_error("OPERATION_DENIED_INSTANCE_STATUS_NOT_SUPPORT", client.AttachNetworkInterface,
             req(models.AttachNetworkInterfaceRequest, nicId="nic-zl-b", instanceId="ins-zl-stopped"))
expect_error("INVALID_INSTANCE_NOT_FOUND", client.AttachNetworkInterface,
             req(models.AttachNetworkInterfaceRequest, nicId="nic-zl-b", instanceId="ins-zl-nope"))
deadline = time.time() + 10
while describe("nic-zl-a").status != "USED":
    assert time.time() < deadline, "attach never completed"
    time.sleep(0.05)
assert describe("nic-zl-a").instanceId == "ins-zl-run"
expect_error("INVALID_NIC_ATTACHED", client.AttachNetworkInterface,
             req(models.AttachNetworkInterfaceRequest, nicId="nic-zl-a", instanceId="ins-zl-run"))
expect_error("OPERATION_DENIED_NIC_NOT_EXIST_INSTANCE", client.DetachNetworkInterface,
             req(models.DetachNetworkInterfaceRequest, nicId="nic-zl-b"))
expect_error("INVALID_NIC_PRIMARY_CANT_DETACH", client.DetachNetworkInterface,
             req(models.DetachNetworkInterfaceRequest, nicId="nic-zl-primary"))
hold_async(True)
client.DetachNetworkInterface(req(models.DetachNetworkInterfaceRequest, nicId="nic-zl-a"))
assert describe("nic-zl-a").status == "DETACHING"
hold_async(False)
deadline = time.time() + 10
while describe("nic-zl-a").status != "AVAILABLE":
    assert time.time() < deadline, "detach never completed"
    time.sleep(0.05)
assert describe("nic-zl-a").instanceId is None

# An attach whose task fails: ATTACHING, then back to AVAILABLE without an instance.
set_faults([{"protocol": "zenlayer", "action": "AttachNetworkInterface", "failTask": True, "times": 1}])
hold_async(True)
client.AttachNetworkInterface(req(models.AttachNetworkInterfaceRequest, nicId="nic-zl-a", instanceId="ins-zl-run"))
assert describe("nic-zl-a").status == "ATTACHING"
hold_async(False)
deadline = time.time() + 10
while describe("nic-zl-a").status == "ATTACHING":
    assert time.time() < deadline, "failed attach never settled"
    time.sleep(0.05)
nic = describe("nic-zl-a")
assert (nic.status, nic.instanceId) == ("AVAILABLE", None), nic

# Reads.
inst = client.DescribeInstances(req(models.DescribeInstancesRequest, instanceIds=["ins-zl-run"]))
assert inst.totalCount == 1 and inst.dataSet[0].status == "RUNNING" and inst.dataSet[0].zoneId == "asia-east-1a"
assert inst.dataSet[0].instanceId == "ins-zl-run"
stopped = client.DescribeInstances(req(models.DescribeInstancesRequest, instanceIds=["ins-zl-stopped"], pageSize=1,
                                       pageNum=1))
assert [(i.instanceId, i.status) for i in stopped.dataSet] == [("ins-zl-stopped", "STOPPED")], stopped
status = client.DescribeInstancesStatus(req(models.DescribeInstancesStatusRequest,
                                            instanceIds=["ins-zl-run", "ins-zl-stopped"]))
assert status.totalCount == 2, status
assert sorted((s.instanceId, s.instanceStatus) for s in status.dataSet) == [
    ("ins-zl-run", "RUNNING"), ("ins-zl-stopped", "STOPPED")], status.dataSet
none = client.DescribeInstances(req(models.DescribeInstancesRequest, instanceIds=["ins-zl-nope"]))
assert (none.totalCount, none.dataSet) == (0, []), none
subnets = client.DescribeSubnets(req(models.DescribeSubnetsRequest, subnetIds=["subnet-zl-dual"]))
assert subnets.dataSet[0].stackType == "IPv4_IPv6" and subnets.dataSet[0].cidrBlock == "10.1.0.0/24"
page = client.DescribeNetworkInterfaces(req(models.DescribeNetworkInterfacesRequest, pageSize=2, pageNum=2))
assert page.totalCount == 9 and len(page.dataSet) == 2
ids = ["nic-zl-a", "nic-zl-b", "nic-zl-dual"]
seen = []
for num in (1, 2):
    page = client.DescribeNetworkInterfaces(req(models.DescribeNetworkInterfacesRequest, nicIds=ids, pageSize=2,
                                                pageNum=num))
    assert page.totalCount == 3, page.totalCount
    seen += [n.nicId for n in page.dataSet]
assert sorted(seen) == ids, seen
regions = client.DescribeNetworkInterfaceRegions(models.DescribeNetworkInterfaceRegionsRequest())
assert regions.regionIds == ["asia-east-1", "eu-west-1"], regions.regionIds

# Authentication: bearer token works; a wrong password is refused.
token_client = ZecClient(TokenCredential("zl-test-bearer"), CONFIG)
assert token_client.DescribeNetworkInterfaceRegions(models.DescribeNetworkInterfaceRegionsRequest()).regionIds
bad = ZecClient(Credential("zl-test-key", "wrong"), CONFIG)
expect_error("SIMULATOR_AUTH_FAILED", bad.DescribeNetworkInterfaceRegions, models.DescribeNetworkInterfaceRegionsRequest())

assert RESPONSES_CHECKED >= {"BatchAssignNetworkInterfaceIpv4", "AssignNetworkInterfaceIpv4",
                             "UnassignNetworkInterfaceIpv4", "DescribeInstancesStatus",
                             "AssignNetworkInterfaceIpv6", "UnassignNetworkInterfaceIpv6", "AttachNetworkInterface",
                             "DetachNetworkInterface", "DescribeNetworkInterfaces", "DescribeInstances",
                             "DescribeSubnets"}, RESPONSES_CHECKED
print("ALL CHECKS PASSED")
