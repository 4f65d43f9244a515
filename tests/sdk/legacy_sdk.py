"""Drives the official legacy Tencent SDK (qcloudapi-sdk-python, VPC API 2.0
on /v2/index.php) against nicip's simulated cloud.

Overrides, and nothing else: the endpoint (the `vpc` module's request host)
and the scheme (the SDK only speaks HTTPS, so its connection class is swapped
for a plain-HTTP one with the same interface).

Run by tests/cloudsim.rs with CLOUDSIM_ENDPOINT=127.0.0.1:PORT and the world
in tests/support/cloudsim_world.yaml.
"""
import json
import os
import time
from http.client import HTTPConnection

import QcloudApi.common.request as qcloud_request
from QcloudApi.modules.vpc import Vpc
from QcloudApi.qcloudapi import QcloudApi

from sim_control import hold_async, set_faults


class PlainHTTPConnection(HTTPConnection):
    def __init__(self, host, port=None):
        HTTPConnection.__init__(self, host, port)
        self.request_length = 0

    def send(self, data):
        HTTPConnection.send(self, data)
        self.request_length += len(data)


qcloud_request.MyHTTPSConnection = PlainHTTPConnection
ENDPOINT = os.environ["CLOUDSIM_ENDPOINT"]
Vpc.requestHost = ENDPOINT


def client(method="GET", sign="HmacSHA1", secret_key="tc-test-secret-key", secret_id="AKIDtestkey0001"):
    return QcloudApi("vpc", {"Region": "gz", "secretId": secret_id, "secretKey": secret_key,
                             "method": method, "SignatureMethod": sign})


def call(c, action, params):
    return json.loads(c.call(action, params))


def ok(resp):
    assert resp["code"] == 0 and resp["codeDesc"] == "Success", resp
    return resp.get("data")


def err(resp, code, desc):
    assert (resp["code"], resp["codeDesc"]) == (code, desc), resp


def wait_task(c, task_id):
    deadline = time.time() + 10
    while True:
        data = ok(call(c, "DescribeVpcTaskResult", {"taskId": task_id}))
        if data["status"] != 2:
            return data["status"]
        assert time.time() < deadline, "task %s never finished" % task_id
        time.sleep(0.05)


def secondaries(c, eni):
    data = ok(call(c, "DescribeNetworkInterfaces", {"networkInterfaceId": eni}))
    assert data["totalNum"] == 1, data
    return [ip["privateIpAddress"] for ip in data["data"][0]["privateIpAddressesSet"] if not ip["primary"]]


# The fields the controller reads, with the names of the API 2.0 pages (the
# legacy SDK has no models: it hands back the raw JSON).
c = client()
data = ok(call(c, "DescribeNetworkInterfaces", {"vpcId": "vpc-7t9nf3pu", "networkInterfaceId": "eni-bbbbbbbb"}))
assert data["totalNum"] == 1 and isinstance(data["totalNum"], int), data
nic = data["data"][0]
assert (nic["networkInterfaceId"], nic["vpcId"], nic["subnetId"]) == (
    "eni-bbbbbbbb", "vpc-7t9nf3pu", "subnet-gz000001"), nic
assert [(ip["privateIpAddress"], ip["primary"]) for ip in nic["privateIpAddressesSet"]] == [
    ("172.16.0.20", True), ("172.16.0.21", False)], nic["privateIpAddressesSet"]
assert not nic["instanceSet"] or not nic["instanceSet"].get("instanceId"), nic["instanceSet"]
attached = ok(call(c, "DescribeNetworkInterfaces", {"vpcId": "vpc-7t9nf3pu", "networkInterfaceId": "eni-primary1"}))
assert attached["data"][0]["instanceSet"]["instanceId"] == "ins-gz000001", attached
# Paging through a VPC in pages of at most 50, as the controller does.
first = ok(call(c, "DescribeNetworkInterfaces", {"vpcId": "vpc-7t9nf3pu", "offset": 0, "limit": 3}))
rest = ok(call(c, "DescribeNetworkInterfaces", {"vpcId": "vpc-7t9nf3pu", "offset": 3, "limit": 50}))
assert first["totalNum"] == rest["totalNum"] == 5 and len(first["data"]) == 3 and len(rest["data"]) == 2, rest
assert len({n["networkInterfaceId"] for n in first["data"] + rest["data"]}) == 5

for mode, (method, sign) in enumerate([("GET", "HmacSHA1"), ("POST", "HmacSHA256"), ("GET", "HmacSHA256")]):
    c = client(method, sign)
    ip = "172.16.0.%d" % (200 + mode)
    data = ok(call(c, "AssignPrivateIpAddresses", {
        "vpcId": "vpc-7t9nf3pu", "networkInterfaceId": "eni-m6dyj72l",
        "privateIpAddressSet": [{"privateIpAddress": ip, "primary": False}]}))
    assert isinstance(data["taskId"], int), data
    assert wait_task(c, data["taskId"]) == 0
    assert ip in secondaries(c, "eni-m6dyj72l")
    err(call(c, "AssignPrivateIpAddresses", {
        "vpcId": "vpc-7t9nf3pu", "networkInterfaceId": "eni-bbbbbbbb",
        "privateIpAddressSet": [{"privateIpAddress": ip, "primary": False}]}), 5100, "InvalidPrivateIpAddress.InUse")
    data = ok(call(c, "UnassignPrivateIpAddresses", {
        "vpcId": "vpc-7t9nf3pu", "networkInterfaceId": "eni-m6dyj72l", "privateIpAddress": [ip]}))
    assert wait_task(c, data["taskId"]) == 0
    assert ip not in secondaries(c, "eni-m6dyj72l")

c = client()
# The task query while the task runs (status 2), then once it is done (0).
hold_async(True)
data = ok(call(c, "AssignPrivateIpAddresses", {
    "vpcId": "vpc-7t9nf3pu", "networkInterfaceId": "eni-m6dyj72l", "secondaryPrivateIpAddressCount": 2}))
running = ok(call(c, "DescribeVpcTaskResult", {"taskId": data["taskId"]}))
assert running["status"] == 2, running
hold_async(False)
assert wait_task(c, data["taskId"]) == 0
assert len(secondaries(c, "eni-m6dyj72l")) == 2
err(call(c, "AssignPrivateIpAddresses", {"vpcId": "vpc-nope0000", "networkInterfaceId": "eni-m6dyj72l",
                                          "secondaryPrivateIpAddressCount": 1}), 5000, "InvalidVpc.NotFound")
err(call(c, "AssignPrivateIpAddresses", {"vpcId": "vpc-7t9nf3pu", "networkInterfaceId": "eni-nope0000",
                                          "secondaryPrivateIpAddressCount": 1}), 5000, "InvalidNetworkInterface.NotFound")
err(call(c, "UnassignPrivateIpAddresses", {"vpcId": "vpc-7t9nf3pu", "networkInterfaceId": "eni-m6dyj72l",
                                            "privateIpAddress": ["172.16.0.10"]}), 4000, "InvalidPrivateip.IsPrimary")

# Attach / detach with task polling.
data = ok(call(c, "AttachNetworkInterface", {"vpcId": "vpc-7t9nf3pu", "networkInterfaceId": "eni-bbbbbbbb",
                                             "instanceId": "ins-gz000001"}))
assert wait_task(c, data["taskId"]) == 0
listed = ok(call(c, "DescribeNetworkInterfaces", {"instanceId": "ins-gz000001"}))
assert sorted(n["networkInterfaceId"] for n in listed["data"]) == ["eni-bbbbbbbb", "eni-primary1"], listed
assert {n["instanceSet"]["instanceId"] for n in listed["data"]} == {"ins-gz000001"}, listed
data = ok(call(c, "DetachNetworkInterface", {"vpcId": "vpc-7t9nf3pu", "networkInterfaceId": "eni-bbbbbbbb",
                                             "instanceId": "ins-gz000001"}))
assert wait_task(c, data["taskId"]) == 0

# A task that fails: status 1, and the output's errorCode/errorMsg.
set_faults([{"protocol": "tencentLegacy", "action": "AssignPrivateIpAddresses", "failTask": True, "times": 1}])
data = ok(call(c, "AssignPrivateIpAddresses", {"vpcId": "vpc-7t9nf3pu", "networkInterfaceId": "eni-bbbbbbbb",
                                               "privateIpAddressSet": [{"privateIpAddress": "172.16.0.170",
                                                                        "primary": False}]}))
assert wait_task(c, data["taskId"]) == 1
task = ok(call(c, "DescribeVpcTaskResult", {"taskId": data["taskId"]}))
output = task["output"]
assert isinstance(output["errorCode"], int) and output["errorCode"] != 0 and output["errorMsg"], task
assert "172.16.0.170" not in secondaries(c, "eni-bbbbbbbb")

# Authentication.
err(call(client(secret_key="wrong"), "DescribeNetworkInterfaces", {}), 4100, "AuthFailure.SignatureFailure")
err(call(client(secret_id="AKIDnobody"), "DescribeNetworkInterfaces", {}), 4104, "AuthFailure.SecretIdNotFound")

print("ALL CHECKS PASSED")
