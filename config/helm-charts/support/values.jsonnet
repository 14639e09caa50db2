// Values computed per cluster for the support release. Only the cluster-level external
// variables exist here (a support release belongs to no hub).
local cluster_name = std.extVar('VARS_2I2C_CLUSTER_NAME');
local provider = std.extVar('VARS_2I2C_PROVIDER');
local account_id = std.extVar('VARS_2I2C_ACCOUNT_ID');

{
  clusterInfo: {
    name: cluster_name,
    provider: provider,
    accountId: account_id,
  },
  prometheus: {
    externalLabels: {
      cluster: cluster_name,
      provider: provider,
    },
  },
  // Only EKS clusters need the cluster autoscaler installed by us; GKE has its own.
  clusterAutoscaler: {
    enabled: provider == 'aws',
  },
}
