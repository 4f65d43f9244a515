//! `nicip.io/v1alpha1`: the `NicIpClaim` and `ProviderConfig` custom resources.
//!
//! Doc comments here become the CRDs' descriptions, which `kubectl explain`
//! shows: they are written for users. Everything that can be checked without
//! the cloud is checked at admission by CEL rules (`x-kubernetes-validations`)
//! and schema constraints; every list and string is bounded so the rules stay
//! within kube-apiserver's cost budget.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most secondary IPv4 addresses one claim may ask for.
pub const MAX_IPV4_ADDRESSES: u32 = 50;
/// Most IPv6 addresses one claim may ask for (Tencent's per-call limit; Zenlayer allows one).
pub const MAX_IPV6_ADDRESSES: u32 = 10;

/// The desired secondary addresses and attachment of one cloud network interface (NIC).
///
/// nicip assigns the addresses and makes the attachment through the cloud API of the
/// referenced ProviderConfig, and reports what the cloud did in `status`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "nicip.io",
    version = "v1alpha1",
    kind = "NicIpClaim",
    namespaced,
    status = "NicIpClaimStatus",
    derive = "PartialEq",
    shortname = "nic",
    shortname = "nicip",
    category = "nicip",
    doc = "NicIpClaim declares the secondary private IPv4 addresses, the IPv6 addresses and the instance attachment one cloud NIC must have.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"NIC","type":"string","jsonPath":".spec.nicId"}"#,
    printcolumn = r#"{"name":"IPv4","type":"integer","description":"Secondary IPv4 addresses this claim owns.","jsonPath":".status.ipv4Count"}"#,
    printcolumn = r#"{"name":"IPv6","type":"string","jsonPath":".status.ipv6[*].address"}"#,
    printcolumn = r#"{"name":"Instance","type":"string","jsonPath":".status.nic.instanceId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Addresses","type":"string","priority":1,"description":"Secondary IPv4 addresses this claim owns.","jsonPath":".status.ipv4[*].address"}"#,
    printcolumn = r#"{"name":"Provider","type":"string","priority":1,"jsonPath":".spec.providerConfigRef.name"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NicIpClaimSpec {
    /// The ProviderConfig (cloud account) whose API manages this NIC.
    #[serde(default)]
    pub provider_config_ref: ProviderConfigRef,

    /// The cloud's ID of the network interface, e.g. `eni-m6dyj72l` (Tencent) or the NIC ID
    /// shown in the Zenlayer console. Immutable: to manage another NIC, create another claim.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("nicId is immutable; create a new NicIpClaim for another NIC"))]
    pub nic_id: String,

    /// The VPC of the NIC, e.g. `vpc-7t9nf3pu`. Required by the Tencent legacy API 2.0
    /// (ProviderConfig provider `TencentLegacy`); ignored by the other providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub vpc_id: Option<String>,

    /// Secondary private IPv4 addresses the NIC must carry, in addition to its primary address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Spec>,

    /// IPv6 addresses the NIC must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Spec>,

    /// The instance the NIC must be attached to. Omit it to leave the attachment alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentSpec>,

    /// What happens in the cloud when this claim is deleted. `Release` (the default) unassigns
    /// exactly the addresses this claim assigned and detaches the NIC only if this claim attached
    /// it; `Retain` leaves the cloud as it is. It may be changed while the claim is being deleted,
    /// which is the way out of a deletion stuck on a cloud error.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// `Full` (the default) makes the cloud match this claim; `ObserveOnly` only reports
    /// differences in status and events and never changes the cloud.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
}

/// A reference to a cluster-scoped ProviderConfig.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigRef {
    /// Name of the ProviderConfig.
    #[serde(default = "default_provider_config_name")]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_provider_config_name() -> String {
    "default".to_owned()
}

impl Default for ProviderConfigRef {
    fn default() -> Self {
        Self {
            name: default_provider_config_name(),
        }
    }
}

/// Secondary private IPv4 addresses: either an explicit list or a count.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.addresses) != has(self.count)").message("set exactly one of ipv4.addresses and ipv4.count"))]
pub struct Ipv4Spec {
    /// The exact addresses, in dotted-decimal form. Each must lie in the NIC's subnet and must
    /// not be the subnet's network, gateway or broadcast address (the cloud checks those).
    /// Addresses already on the NIC are adopted, not assigned again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50), inner(length(min = 7, max = 15)))]
    #[x_kube(
        validation = kube::core::Rule::new("self.all(a, isIP(a) && ip(a).family() == 4)").message("every address must be an IPv4 address in dotted-decimal form, e.g. 10.0.0.5"),
        validation = kube::core::Rule::new("self.all(a, !isIP(a) || ip(a).isGlobalUnicast())").message("addresses must be unicast: not loopback, link-local, multicast, broadcast or 0.0.0.0"),
        validation = kube::core::Rule::new("self.all(a, self.exists_one(b, b == a))").message("addresses must be unique")
    )]
    pub addresses: Option<Vec<String>>,

    /// How many addresses the cloud should choose from the NIC's subnet. Only addresses this
    /// claim assigned count towards it; when it shrinks, the newest are released first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub count: Option<u32>,

    /// Tencent only: the QoS level of the assigned addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_level: Option<QosLevel>,
}

/// Tencent QoS levels for private addresses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum QosLevel {
    #[serde(rename = "PT")]
    Pt,
    #[serde(rename = "AU")]
    Au,
    #[serde(rename = "AG")]
    Ag,
    #[serde(rename = "DEFAULT")]
    Default,
}

/// IPv6 addresses of the NIC and, on Zenlayer, the billing of a public IPv6.
///
/// Zenlayer requires `internetChargeType` and `bandwidth` exactly when the subnet's IPv6 is
/// public, `packageSize` with `ByTrafficPackage` and `clusterId` with `BandwidthCluster`; set
/// none of them for a private IPv6.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("!has(self.packageSize) || (has(self.internetChargeType) && self.internetChargeType == 'ByTrafficPackage')").message("packageSize is only valid with internetChargeType ByTrafficPackage").field_path(".packageSize"),
    validation = kube::core::Rule::new("!has(self.clusterId) || (has(self.internetChargeType) && self.internetChargeType == 'BandwidthCluster')").message("clusterId is only valid with internetChargeType BandwidthCluster").field_path(".clusterId"),
    validation = kube::core::Rule::new("!has(self.internetChargeType) || self.internetChargeType != 'BandwidthCluster' || has(self.clusterId)").message("internetChargeType BandwidthCluster needs clusterId").field_path(".clusterId"),
    validation = kube::core::Rule::new("!has(self.internetChargeType) || self.internetChargeType != 'ByTrafficPackage' || has(self.packageSize)").message("internetChargeType ByTrafficPackage needs packageSize").field_path(".packageSize"),
    validation = kube::core::Rule::new("has(self.internetChargeType) == has(self.bandwidth)").message("a public IPv6 needs both internetChargeType and bandwidth; a private IPv6 takes neither").field_path(".bandwidth")
)]
pub struct Ipv6Spec {
    /// How many IPv6 addresses the NIC must carry. Zenlayer NICs carry exactly one; Tencent
    /// allows up to 10 per request.
    #[serde(default = "default_ipv6_count")]
    #[schemars(range(min = 1, max = 10))]
    pub count: u32,

    /// Zenlayer only, for subnets with public IPv6 (required there, with `bandwidth`): how the
    /// address is billed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_charge_type: Option<InternetChargeType>,

    /// Zenlayer only, for public IPv6 (required there, with `internetChargeType`): the bandwidth
    /// cap in Mbps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub bandwidth: Option<u32>,

    /// Zenlayer only, required with `ByTrafficPackage`: the traffic package size in TB, 0 or a
    /// multiple of 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100000.0))]
    #[x_kube(validation = kube::core::Rule::new("double(self) * 10.0 - double(int(double(self) * 10.0 + 0.5)) < 0.000001 && double(int(double(self) * 10.0 + 0.5)) - double(self) * 10.0 < 0.000001").message("packageSize must be 0 or a multiple of 0.1 TB"))]
    pub package_size: Option<f64>,

    /// Zenlayer only, required with `BandwidthCluster`: the shared bandwidth package ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub cluster_id: Option<String>,
}

fn default_ipv6_count() -> u32 {
    1
}

/// How Zenlayer bills a public IPv6 address.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum InternetChargeType {
    ByBandwidth,
    ByTrafficPackage,
    BandwidthCluster,
}

/// The instance a NIC must be attached to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentSpec {
    /// The cloud's instance ID. It must be running and in the NIC's zone.
    #[schemars(length(min = 1, max = 64))]
    pub instance_id: String,
}

/// What to do in the cloud when a claim is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Unassign what this claim assigned and detach what it attached.
    #[default]
    Release,
    /// Leave the cloud as it is.
    Retain,
}

/// Whether nicip changes the cloud or only observes it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ManagementPolicy {
    /// Make the cloud match the claim.
    #[default]
    Full,
    /// Report differences, never change the cloud.
    ObserveOnly,
}

/// What nicip last did and saw for this claim. Written only by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicIpClaimStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Secondary IPv4 addresses this claim owns, one entry per address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub ipv4: Vec<OwnedAddress>,

    /// Number of entries in `ipv4` (shown by `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_count: Option<u32>,

    /// IPv6 addresses this claim owns, one entry per address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub ipv6: Vec<OwnedAddress>,

    /// The attachment this claim manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentStatus>,

    /// The NIC as last observed in the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<ObservedNic>,

    /// The number of the last mutating cloud call planned for this claim. Idempotency tokens
    /// derive from it, so a new call never replays an old answer, and a retry of the recorded
    /// call is the same request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_sequence: Option<u64>,

    /// The mutating cloud call in flight. Recorded before the call and cleared once its outcome
    /// is known, so that a restarted controller resolves it from the cloud's state instead of
    /// repeating it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_operation: Option<PendingOperation>,

    /// The last error the cloud returned; cleared on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,

    /// `Ready`, `Reconciling`, `Stalled`, and the details `IPv4Assigned`, `IPv6Assigned`,
    /// `Attached`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// An address owned by a claim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnedAddress {
    /// The address.
    #[schemars(length(max = 45))]
    pub address: String,
    /// How the claim came to own it.
    pub source: AddressSource,
    /// Where the address is in its life cycle.
    pub state: AddressState,
    /// When the address entered its current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// How a claim came to own an address.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AddressSource {
    /// Listed in `spec.ipv4.addresses` and assigned by this claim.
    Explicit,
    /// Chosen by the cloud for `spec.ipv4.count` or `spec.ipv6.count`.
    Count,
    /// Listed in `spec.ipv4.addresses` and already on the NIC when the claim first saw it.
    Adopted,
}

/// Where an owned address is in its life cycle.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AddressState {
    Assigning,
    Assigned,
    Releasing,
}

/// The attachment a claim manages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentStatus {
    /// The instance.
    #[schemars(length(max = 64))]
    pub instance_id: String,
    /// Where the attachment is in its life cycle.
    pub state: AttachmentState,
    /// True when this claim made the attachment; only then does `deletionPolicy: Release`
    /// detach the NIC.
    #[serde(default)]
    pub attached_by_claim: bool,
}

/// Where an attachment is in its life cycle.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AttachmentState {
    Attaching,
    Attached,
    Detaching,
}

/// The NIC as last observed in the cloud.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedNic {
    /// The cloud's status of the NIC, verbatim (e.g. `AVAILABLE`, `USED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub status: Option<String>,
    /// The subnet the NIC belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub subnet_id: Option<String>,
    /// The VPC the NIC belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub vpc_id: Option<String>,
    /// The NIC's primary private IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 15))]
    pub primary_ipv4: Option<String>,
    /// The instance the NIC is attached to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub instance_id: Option<String>,
}

/// A mutating cloud call whose outcome is not yet known: the whole request, so that a restarted
/// controller can resolve it from the cloud's state, or send exactly the same request again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingOperation {
    /// The operation.
    pub action: OperationAction,
    /// The NIC the call changes.
    #[schemars(length(min = 1, max = 64))]
    pub nic_id: String,
    /// The NIC's VPC (the Tencent legacy API names it in every call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub vpc_id: Option<String>,
    /// The claim's operation sequence number this call was planned under (see
    /// `operationSequence`).
    pub sequence: u64,
    /// Which call of the operation this is, when one change takes several calls (at most 10
    /// addresses per call on Tencent).
    #[serde(default)]
    pub chunk: u32,
    /// The idempotency token sent with the call (Tencent `ClientToken`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub token: Option<String>,
    /// The cloud's request or task ID, once the cloud answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub request_id: Option<String>,
    /// The addresses the call assigns or releases (empty when the cloud chooses them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(max = 45)))]
    pub addresses: Vec<String>,
    /// How many addresses the cloud was asked to choose (count mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Tencent only: the QoS level the call asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_level: Option<QosLevel>,
    /// Zenlayer only: the billing of a public IPv6 the call assigns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_billing: Option<Ipv6Billing>,
    /// The instance, for attach and detach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub instance_id: Option<String>,
    /// The NIC's addresses just before the call, so that addresses chosen by the cloud can be
    /// told apart from the ones already there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 45)))]
    pub addresses_before: Vec<String>,
    /// When the request was first sent (to the microsecond); unset while it is only planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<MicroTime>,
}

/// The mutating cloud operations.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum OperationAction {
    AssignIpv4,
    UnassignIpv4,
    AssignIpv6,
    UnassignIpv6,
    Attach,
    Detach,
}

impl OperationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationAction::AssignIpv4 => "AssignIpv4",
            OperationAction::UnassignIpv4 => "UnassignIpv4",
            OperationAction::AssignIpv6 => "AssignIpv6",
            OperationAction::UnassignIpv6 => "UnassignIpv6",
            OperationAction::Attach => "Attach",
            OperationAction::Detach => "Detach",
        }
    }
}

impl std::fmt::Display for OperationAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Zenlayer's billing fields of a public IPv6, as sent with `AssignNetworkInterfaceIpv6`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ipv6Billing {
    /// `ByBandwidth`, `ByTrafficPackage` or `BandwidthCluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub internet_charge_type: Option<String>,
    /// The bandwidth cap in Mbps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<u32>,
    /// The traffic package size in TB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_size: Option<f64>,
    /// The shared bandwidth package ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub cluster_id: Option<String>,
}

/// The last error the cloud returned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// The cloud action that failed.
    #[schemars(length(max = 64))]
    pub action: String,
    /// The cloud's error code, verbatim, e.g. `INVALID_IP_OUT_OF_RANGE`.
    #[schemars(length(max = 128))]
    pub code: String,
    /// The cloud's message.
    #[schemars(length(max = 1024))]
    pub message: String,
    /// The HTTP status of the answer, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The cloud's request ID, for support tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub request_id: Option<String>,
    /// Whether nicip retries by itself; if false, the claim waits for a change.
    pub retryable: bool,
    /// When the error happened.
    pub time: Time,
}

/// A cloud account: which cloud, where, and the Secret holding its credentials.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "nicip.io",
    version = "v1alpha1",
    kind = "ProviderConfig",
    status = "ProviderConfigStatus",
    derive = "PartialEq",
    category = "nicip",
    doc = "ProviderConfig is one cloud account nicip manages NICs with: the provider, its region, and the Secret holding its credentials.",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.provider == 'Zenlayer' || has(self.region)").message("region is required for the Tencent providers").field_path(".region"))]
pub struct ProviderConfigSpec {
    /// Which cloud API to speak: `Zenlayer` (ZEC API 2.0), `Tencent` (VPC API 3.0) or
    /// `TencentLegacy` (VPC API 2.0).
    pub provider: Provider,

    /// The region, e.g. `ap-guangzhou` (Tencent) or `gz` (Tencent legacy short names). Zenlayer
    /// infers the region from resource IDs and ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,

    /// Overrides the cloud's API endpoint, e.g. to use the simulated cloud
    /// (`http://127.0.0.1:18080`). Must be `https://`, except for loopback hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(
        validation = kube::core::Rule::new("isURL(self) && url(self).getScheme() in ['https', 'http']").message("endpoint must be an absolute http(s) URL"),
        validation = kube::core::Rule::new("!isURL(self) || url(self).getScheme() != 'http' || url(self).getHostname() in ['localhost', '127.0.0.1', '::1']").message("plain http is only allowed for loopback endpoints (localhost, 127.0.0.1, ::1); use https")
    )]
    pub endpoint: Option<String>,

    /// Tencent only: overrides the CVM API endpoint (instance lookups for attachments). Defaults
    /// to `endpoint` when that is set, else to Tencent's CVM endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(
        validation = kube::core::Rule::new("isURL(self) && url(self).getScheme() in ['https', 'http']").message("cvmEndpoint must be an absolute http(s) URL"),
        validation = kube::core::Rule::new("!isURL(self) || url(self).getScheme() != 'http' || url(self).getHostname() in ['localhost', '127.0.0.1', '::1']").message("plain http is only allowed for loopback endpoints (localhost, 127.0.0.1, ::1); use https")
    )]
    pub cvm_endpoint: Option<String>,

    /// The Secret holding the account's credentials.
    pub credentials_secret_ref: CredentialsSecretRef,

    /// Per-action rate limits, overriding the cloud's documented defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["action"]))]
    pub rate_limits: Vec<RateLimit>,

    /// Only claims in namespaces matching this selector may use this account. Unset means all
    /// namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<LabelSelector>,
}

/// The cloud APIs nicip speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Provider {
    /// Zenlayer Cloud ZEC, API 2.0.
    Zenlayer,
    /// Tencent Cloud VPC, API 3.0 (TC3-HMAC-SHA256).
    Tencent,
    /// Tencent Cloud VPC, legacy API 2.0 (`/v2/index.php`). IPv4 only.
    TencentLegacy,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Zenlayer => "Zenlayer",
            Provider::Tencent => "Tencent",
            Provider::TencentLegacy => "TencentLegacy",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a ProviderConfig's credentials are.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret; defaults to the controller's own namespace. Other namespaces are
    /// readable only if the installation allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Key of the access key ID (Tencent SecretId, Zenlayer AccessKeyId).
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_id_key: String,
    /// Key of the access key secret (Tencent SecretKey, Zenlayer AccessKeyPassword).
    #[serde(default = "default_access_key_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_secret_key: String,
    /// Optional key of a token: a Tencent session token for temporary credentials, or a Zenlayer
    /// personal access token (used instead of the access key pair when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub token_key: Option<String>,
}

fn default_access_key_id_key() -> String {
    "accessKeyId".to_owned()
}

fn default_access_key_secret_key() -> String {
    "accessKeySecret".to_owned()
}

/// A rate limit for one cloud action.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// The cloud action, e.g. `AssignPrivateIpAddresses`.
    #[schemars(length(min = 1, max = 64))]
    pub action: String,
    /// Requests per second.
    #[schemars(range(min = 1, max = 10000))]
    pub requests_per_second: u32,
}

/// What nicip last found out about a ProviderConfig.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: a read-only call with these credentials succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
