"""Drives the official Tencent Cloud Python SDK (tencentcloud-sdk-python-vpc
and -common) against nicip's simulated cloud, in every signing mode the SDK
has: TC3-HMAC-SHA256 over POST/JSON and GET, and signature v1 (HmacSHA256,
HmacSHA1). Only the endpoint and scheme are overridden.

Run by tests/cloudsim.rs with CLOUDSIM_ENDPOINT=127.0.0.1:PORT and the world
in tests/support/cloudsim_world.yaml.
"""
import json
import os
import time

from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312 import models as cvm_models
from tencentcloud.vpc.v20170312 import models, vpc_client

from sim_control import hold_async, set_faults
from sdk_models import check_tencent

ENDPOINT = os.environ["CLOUDSIM_ENDPOINT"]
CRED = credential.Credential("AKIDtestkey0001", "tc-test-secret-key")
RESPONSES_CHECKED = set()


def checked(client, module):
    """Every successful answer uses only the SDK response model's fields, each
    with its documented type (the SDK itself checks neither)."""
    call = client.call

    def checked_call(action, params, *args, **kwargs):
        body = call(action, params, *args, **kwargs)
        response = json.loads(body)["Response"]
        if "Error" not in response:
            check_tencent(module, getattr(module, action + "Response"), response, action)
            RESPONSES_CHECKED.add(action)
        return body
    client.call = checked_call
    return client


def profile(method="POST", sign=None, language="en-US"):
    http = HttpProfile(protocol="http", endpoint=ENDPOINT, reqMethod=method)
    return ClientProfile(signMethod=sign, httpProfile=http, language=language)


def vpc(method="POST", sign=None, cred=CRED, region="ap-guangzhou"):
    return checked(vpc_client.VpcClient(cred, region, profile(method, sign)), models)


def request(cls, fields):
    r = cls()
    r.from_json_string(json.dumps(fields))
    return r


def expect_error(code, fn, *args):
    try:
        fn(*args)
    except TencentCloudSDKException as e:
        assert e.get_code() == code, "expected %s, got %s: %s" % (code, e.get_code(), e.get_message())
        assert e.get_request_id(), "errors carry a RequestId"
        assert e.get_message(), "errors carry a Message"
        return
    raise AssertionError("expected error %s" % code)


def wait_task(client, task_id):
    deadline = time.time() + 10
    while True:
        r = client.DescribeVpcTaskResult(request(models.DescribeVpcTaskResultRequest, {"TaskId": task_id}))
        if r.Status != "RUNNING":
            return r
        assert time.time() < deadline, "task %s never finished" % task_id
        time.sleep(0.05)


def describe(client, eni):
    r = client.DescribeNetworkInterfaces(
        request(models.DescribeNetworkInterfacesRequest, {"NetworkInterfaceIds": [eni]}))
    assert r.TotalCount == 1, r.TotalCount
    return r.NetworkInterfaceSet[0]


def secondary(nic):
    assert all(isinstance(ip.Primary, bool) for ip in nic.PrivateIpAddressSet), nic
    return [ip.PrivateIpAddress for ip in nic.PrivateIpAddressSet if not ip.Primary]


def ip_states(nic):
    return {ip.PrivateIpAddress: ip.State for ip in nic.PrivateIpAddressSet}


def ipv6_states(nic):
    return {a.Address: a.State for a in nic.Ipv6AddressSet}


def full_flow(client):
    # The fields the controller reads, as the SDK's models see them.
    nic = describe(client, "eni-m6dyj72l")
    assert nic.NetworkInterfaceId == "eni-m6dyj72l", nic.NetworkInterfaceId
    assert (nic.VpcId, nic.SubnetId) == ("vpc-7t9nf3pu", "subnet-gz000001"), (nic.VpcId, nic.SubnetId)
    assert (nic.State, nic.NetworkInterfaceState) == ("AVAILABLE", "AVAILABLE"), (nic.State, nic.NetworkInterfaceState)
    assert nic.Attachment is None and nic.Ipv6AddressSet == []
    assert [(ip.PrivateIpAddress, ip.Primary, ip.State) for ip in nic.PrivateIpAddressSet] == [
        ("172.16.0.10", True, "AVAILABLE")], nic.PrivateIpAddressSet
    attached = describe(client, "eni-primary1")
    assert attached.State == "AVAILABLE" and attached.NetworkInterfaceState == "INUSE", attached
    assert attached.Attachment.InstanceId == "ins-gz000001" and attached.Primary is True, attached.Attachment

    # Assign explicit + counted, poll the task, check the addresses.
    hold_async(True)
    r = client.AssignPrivateIpAddresses(request(models.AssignPrivateIpAddressesRequest, {
        "NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": [{"PrivateIpAddress": "172.16.0.100"}],
        "ClientToken": "sdk-token-1"}))
    assert [a.PrivateIpAddress for a in r.PrivateIpAddressSet] == ["172.16.0.100"]
    task = r.RequestId
    assert ip_states(describe(client, "eni-m6dyj72l"))["172.16.0.100"] == "PENDING"
    expect_error("UnsupportedOperation.MutexOperationTaskRunning", client.AssignPrivateIpAddresses,
                 request(models.AssignPrivateIpAddressesRequest,
                         {"NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": 1}))
    hold_async(False)
    done = wait_task(client, task)
    assert done.Status == "SUCCESS" and isinstance(done.Output, str), (done.Status, done.Output)
    nic = describe(client, "eni-m6dyj72l")
    assert secondary(nic) == ["172.16.0.100"], secondary(nic)
    assert all(ip.State == "AVAILABLE" for ip in nic.PrivateIpAddressSet)
    # Replaying the ClientToken returns the original answer and allocates nothing.
    again = client.AssignPrivateIpAddresses(request(models.AssignPrivateIpAddressesRequest, {
        "NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": [{"PrivateIpAddress": "172.16.0.100"}],
        "ClientToken": "sdk-token-1"}))
    assert again.RequestId == task
    expect_error("UnsupportedOperation.IdempotentParameterMismatch", client.AssignPrivateIpAddresses,
                 request(models.AssignPrivateIpAddressesRequest, {
                     "NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": 2,
                     "ClientToken": "sdk-token-1"}))

    # Rules.
    for ip, code in [("172.16.5.5", "InvalidParameterValue.Range"), ("172.16.0.1", "InvalidParameterValue.Reserved"),
                     ("172.16.0.255", "InvalidParameterValue.Reserved"), ("172.16.0.21", "ResourceInUse"),
                     ("172.16.0.999", "InvalidParameterValue.Malformed")]:
        expect_error(code, client.AssignPrivateIpAddresses, request(models.AssignPrivateIpAddressesRequest, {
            "NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": [{"PrivateIpAddress": ip}]}))
    expect_error("InvalidParameterValue.LimitExceeded", client.AssignPrivateIpAddresses,
                 request(models.AssignPrivateIpAddressesRequest, {
                     "NetworkInterfaceId": "eni-m6dyj72l",
                     "PrivateIpAddresses": [{"PrivateIpAddress": "172.16.0.%d" % i} for i in range(110, 121)]}))
    expect_error("LimitExceeded", client.AssignPrivateIpAddresses, request(models.AssignPrivateIpAddressesRequest, {
        "NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": 5}))
    expect_error("ResourceInsufficient.Subnet", client.AssignPrivateIpAddresses,
                 request(models.AssignPrivateIpAddressesRequest,
                         {"NetworkInterfaceId": "eni-tiny0001", "SecondaryPrivateIpAddressCount": 5}))
    expect_error("ResourceNotFound", client.AssignPrivateIpAddresses, request(models.AssignPrivateIpAddressesRequest, {
        "NetworkInterfaceId": "eni-nope0000", "SecondaryPrivateIpAddressCount": 1}))
    expect_error("UnsupportedOperation.PrimaryIp", client.UnassignPrivateIpAddresses,
                 request(models.UnassignPrivateIpAddressesRequest, {
                     "NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": [{"PrivateIpAddress": "172.16.0.10"}]}))

    # Unassign.
    hold_async(True)
    r = client.UnassignPrivateIpAddresses(request(models.UnassignPrivateIpAddressesRequest, {
        "NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": [{"PrivateIpAddress": "172.16.0.100"}]}))
    assert ip_states(describe(client, "eni-m6dyj72l"))["172.16.0.100"] == "DELETING"
    hold_async(False)
    assert wait_task(client, r.RequestId).Status == "SUCCESS"
    assert secondary(describe(client, "eni-m6dyj72l")) == []

    # IPv6.
    hold_async(True)
    r = client.AssignIpv6Addresses(request(models.AssignIpv6AddressesRequest,
                                           {"NetworkInterfaceId": "eni-m6dyj72l", "Ipv6AddressCount": 1}))
    address = r.Ipv6AddressSet[0].Address
    assert address.startswith("2402:4e00:1:"), address
    assert ipv6_states(describe(client, "eni-m6dyj72l")) == {address: "PENDING"}
    hold_async(False)
    assert wait_task(client, r.RequestId).Status == "SUCCESS"
    assert ipv6_states(describe(client, "eni-m6dyj72l")) == {address: "AVAILABLE"}
    expect_error("UnsupportedOperation", client.AssignIpv6Addresses, request(models.AssignIpv6AddressesRequest, {
        "NetworkInterfaceId": "eni-v4only01", "Ipv6AddressCount": 1}))
    hold_async(True)
    r = client.UnassignIpv6Addresses(request(models.UnassignIpv6AddressesRequest, {
        "NetworkInterfaceId": "eni-m6dyj72l", "Ipv6Addresses": [{"Address": address}]}))
    assert ipv6_states(describe(client, "eni-m6dyj72l")) == {address: "DELETING"}
    hold_async(False)
    assert wait_task(client, r.RequestId).Status == "SUCCESS"
    assert describe(client, "eni-m6dyj72l").Ipv6AddressSet == []

    # Attach and detach.
    hold_async(True)
    r = client.AttachNetworkInterface(request(models.AttachNetworkInterfaceRequest, {
        "NetworkInterfaceId": "eni-m6dyj72l", "InstanceId": "ins-gz000001"}))
    nic = describe(client, "eni-m6dyj72l")
    assert (nic.State, nic.NetworkInterfaceState) == ("ATTACHING", "ATTACHING"), (nic.State, nic.NetworkInterfaceState)
    hold_async(False)
    assert wait_task(client, r.RequestId).Status == "SUCCESS"
    nic = describe(client, "eni-m6dyj72l")
    assert (nic.State, nic.NetworkInterfaceState) == ("AVAILABLE", "INUSE"), (nic.State, nic.NetworkInterfaceState)
    assert nic.Attachment.InstanceId == "ins-gz000001"
    listed = client.DescribeNetworkInterfaces(request(models.DescribeNetworkInterfacesRequest, {
        "Filters": [{"Name": "attachment.instance-id", "Values": ["ins-gz000001"]}]}))
    assert sorted(n.NetworkInterfaceId for n in listed.NetworkInterfaceSet) == ["eni-m6dyj72l", "eni-primary1"]
    expect_error("UnsupportedOperation.AttachmentAlreadyExists", client.AttachNetworkInterface,
                 request(models.AttachNetworkInterfaceRequest,
                         {"NetworkInterfaceId": "eni-m6dyj72l", "InstanceId": "ins-gz000001"}))
    expect_error("UnsupportedOperation.ZoneMismatch", client.AttachNetworkInterface,
                 request(models.AttachNetworkInterfaceRequest,
                         {"NetworkInterfaceId": "eni-v4only01", "InstanceId": "ins-gz000001"}))
    hold_async(True)
    r = client.DetachNetworkInterface(request(models.DetachNetworkInterfaceRequest, {
        "NetworkInterfaceId": "eni-m6dyj72l", "InstanceId": "ins-gz000001"}))
    nic = describe(client, "eni-m6dyj72l")
    assert nic.State == "DETACHING" and nic.Attachment.InstanceId == "ins-gz000001", nic
    hold_async(False)
    assert wait_task(client, r.RequestId).Status == "SUCCESS"
    nic = describe(client, "eni-m6dyj72l")
    assert (nic.State, nic.NetworkInterfaceState, nic.Attachment) == ("AVAILABLE", "AVAILABLE", None), nic

    # Reads.
    limit = client.DescribeNetworkInterfaceLimit(
        request(models.DescribeNetworkInterfaceLimitRequest, {"InstanceId": "ins-gz000001"}))
    assert (limit.EniQuantity, limit.EniPrivateIpAddressQuantity) == (2, 10)
    subnets = client.DescribeSubnets(request(models.DescribeSubnetsRequest, {"SubnetIds": ["subnet-gz000001"]}))
    assert subnets.SubnetSet[0].CidrBlock == "172.16.0.0/24"
    # The id filter and paging the controller uses: three ids, pages of two.
    ids = ["eni-m6dyj72l", "eni-bbbbbbbb", "eni-v4only01"]
    seen = []
    for offset in (0, 2):
        page = client.DescribeNetworkInterfaces(request(models.DescribeNetworkInterfacesRequest, {
            "Filters": [{"Name": "network-interface-id", "Values": ids}], "Offset": offset, "Limit": 2}))
        assert page.TotalCount == 3, page.TotalCount
        seen += [n.NetworkInterfaceId for n in page.NetworkInterfaceSet]
    assert sorted(seen) == sorted(ids), seen
    gone = client.DescribeNetworkInterfaces(request(models.DescribeNetworkInterfacesRequest, {
        "Filters": [{"Name": "network-interface-id", "Values": ["eni-gone0000"]}]}))
    assert (gone.TotalCount, gone.NetworkInterfaceSet) == (0, []), gone
    expect_error("ResourceNotFound", client.DescribeVpcTaskResult,
                 request(models.DescribeVpcTaskResultRequest, {"TaskId": "no-such-task"}))


def quick_flow(client, ip):
    """Assign, check and release one address: enough to prove a signing mode."""
    r = client.AssignPrivateIpAddresses(request(models.AssignPrivateIpAddressesRequest, {
        "NetworkInterfaceId": "eni-bbbbbbbb", "PrivateIpAddresses": [{"PrivateIpAddress": ip}]}))
    assert wait_task(client, r.RequestId).Status == "SUCCESS"
    assert ip in secondary(describe(client, "eni-bbbbbbbb"))
    expect_error("ResourceInUse", client.AssignPrivateIpAddresses, request(models.AssignPrivateIpAddressesRequest, {
        "NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": [{"PrivateIpAddress": ip}]}))
    r = client.UnassignPrivateIpAddresses(request(models.UnassignPrivateIpAddressesRequest, {
        "NetworkInterfaceId": "eni-bbbbbbbb", "PrivateIpAddresses": [{"PrivateIpAddress": ip}]}))
    assert wait_task(client, r.RequestId).Status == "SUCCESS"


full_flow(vpc())

# A task that fails: FAILED with its output text, and the address rolled back.
set_faults([{"protocol": "tencent", "action": "AssignPrivateIpAddresses", "failTask": True, "times": 1}])
c = vpc()
r = c.AssignPrivateIpAddresses(request(models.AssignPrivateIpAddressesRequest, {
    "NetworkInterfaceId": "eni-bbbbbbbb", "PrivateIpAddresses": [{"PrivateIpAddress": "172.16.0.160"}]}))
failed = wait_task(c, r.RequestId)
assert failed.Status == "FAILED" and isinstance(failed.Output, str) and failed.Output, (failed.Status, failed.Output)
assert "172.16.0.160" not in secondary(describe(c, "eni-bbbbbbbb"))
quick_flow(vpc(method="GET"), "172.16.0.150")
quick_flow(vpc(sign="HmacSHA256"), "172.16.0.151")
quick_flow(vpc(method="GET", sign="HmacSHA1"), "172.16.0.152")

# Temporary credentials with their session token.
temp = credential.Credential("AKIDtempkey0001", "tc-temp-secret-key", "tc-session-token")
assert vpc(cred=temp).DescribeSubnets(models.DescribeSubnetsRequest()).TotalCount == 3
assert vpc(cred=temp, sign="HmacSHA256").DescribeSubnets(models.DescribeSubnetsRequest()).TotalCount == 3

# Authentication and common errors.
bad = vpc(cred=credential.Credential("AKIDtestkey0001", "wrong"))
expect_error("AuthFailure.SignatureFailure", bad.DescribeSubnets, models.DescribeSubnetsRequest())
expect_error("AuthFailure.SignatureFailure", vpc(sign="HmacSHA1", cred=credential.Credential("AKIDtestkey0001", "wrong")).DescribeSubnets, models.DescribeSubnetsRequest())
expect_error("AuthFailure.SecretIdNotFound", vpc(cred=credential.Credential("AKIDnobody", "x")).DescribeSubnets,
             models.DescribeSubnetsRequest())
expect_error("AuthFailure.TokenFailure", vpc(cred=credential.Credential("AKIDtempkey0001", "tc-temp-secret-key")).DescribeSubnets,
             models.DescribeSubnetsRequest())
expect_error("UnsupportedRegion", vpc(region="ap-mars").DescribeSubnets, models.DescribeSubnetsRequest())
expect_error("ResourceNotFound", vpc(region="ap-shanghai").DescribeNetworkInterfaceLimit,
             request(models.DescribeNetworkInterfaceLimitRequest, {"InstanceId": "eni-m6dyj72l"}))

# CVM DescribeInstances, through the SDK's generic client (service cvm).
cvm = CommonClient("cvm", "2017-03-12", CRED, "ap-guangzhou", profile())
out = cvm.call_json("DescribeInstances", {"InstanceIds": ["ins-gz000001", "ins-gz000003"]})
check_tencent(cvm_models, cvm_models.DescribeInstancesResponse, out["Response"], "DescribeInstances")
states = [(i["InstanceId"], i["InstanceState"], i["Placement"]["Zone"]) for i in out["Response"]["InstanceSet"]]
assert states == [("ins-gz000001", "RUNNING", "ap-guangzhou-3"), ("ins-gz000003", "PENDING", "ap-guangzhou-3")], states
assert out["Response"]["TotalCount"] == 2, out
try:
    cvm.call_json("RebootInstances", {"InstanceIds": ["ins-gz000001"]})
    raise AssertionError("expected InvalidAction")
except TencentCloudSDKException as e:
    assert e.get_code() == "InvalidAction", e

assert RESPONSES_CHECKED >= {"AssignPrivateIpAddresses", "UnassignPrivateIpAddresses", "AssignIpv6Addresses",
                             "UnassignIpv6Addresses", "AttachNetworkInterface", "DetachNetworkInterface",
                             "DescribeNetworkInterfaces", "DescribeVpcTaskResult", "DescribeNetworkInterfaceLimit",
                             "DescribeSubnets"}, RESPONSES_CHECKED
print("ALL CHECKS PASSED")
