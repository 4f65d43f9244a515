"""The simulated cloud's loopback control endpoints (no cloud signature), for
the SDK driver scripts. CLOUDSIM_ENDPOINT is the simulator's host:port."""
import json
import os
import urllib.request

ENDPOINT = os.environ["CLOUDSIM_ENDPOINT"]


def _put(path, body):
    req = urllib.request.Request("http://%s%s" % (ENDPOINT, path), data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


def set_faults(rules):
    """Replaces the simulator's fault rules."""
    _put("/_sim/faults", rules)


def hold_async(held):
    """While held, asynchronous work (Tencent tasks, Zenlayer attach/detach)
    stays in flight, so transitional states can be checked without racing
    the simulated latency."""
    _put("/_sim/async", {"held": held})
