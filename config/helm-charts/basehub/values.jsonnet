// Values computed per hub, rendered by hubbot (validation) and by deploy.py (deploys) with the
// external variables 2i2c's deployer sets. See the example's README for the exact command.
local hub_name = std.extVar('VARS_2I2C_HUB_NAME');
local hub_domain = std.extVar('VARS_2I2C_HUB_DOMAIN');
local cluster_name = std.extVar('VARS_2I2C_CLUSTER_NAME');
local provider = std.extVar('VARS_2I2C_PROVIDER');
local account_id = std.extVar('VARS_2I2C_ACCOUNT_ID');

// A hub is a staging hub if its name contains 'staging', as hubbot's default pattern says.
local is_staging = std.length(std.findSubstr('staging', hub_name)) > 0;

// daskhub's values.jsonnet is a symlink to this file; when rendered through it, everything
// goes under `basehub:`, because daskhub holds basehub as a dependency. This looks at the
// folder that holds the file as it was named (the symlink itself, not its target), and works
// with relative and absolute paths alike.
local path_parts = std.split(std.thisFile, '/');
local chart_folder = if std.length(path_parts) >= 2 then path_parts[std.length(path_parts) - 2] else '';
local emit(config) = if chart_folder == 'daskhub' then { basehub: config } else config;

local node_selector =
  if provider == 'gcp' then { 'cloud.google.com/gke-nodepool': 'user' }
  else if provider == 'aws' then { 'example.org/hub-name': hub_name, 'node.kubernetes.io/instance-type': 'r5.xlarge' }
  else {};

local nfs_mount_options =
  if provider == 'aws' then ['rsize=1048576', 'wsize=1048576', 'timeo=600', 'soft', 'noresvport']
  else ['soft', 'noatime'];

emit({
  hubInfo: {
    cluster: cluster_name,
    provider: provider,
    accountId: account_id,
    hub: hub_name,
    domain: hub_domain,
    staging: is_staging,
  },
  nfs: {
    pv: {
      baseShareName: '/export/%s/' % hub_name,
      mountOptions: nfs_mount_options,
    },
  },
  jupyterhub: {
    ingress: {
      hosts: [hub_domain],
      tls: [{ hosts: [hub_domain], secretName: 'https-auto-tls' }],
    },
    hub: {
      config: {
        OAuthenticator: {
          // Always set, so the callback URL is never guessed wrong behind the ingress.
          oauth_callback_url: 'https://%s/hub/oauth_callback' % hub_domain,
        },
      },
    },
    singleuser: {
      nodeSelector: node_selector,
    },
    cull: {
      enabled: true,
      // Staging servers are culled sooner: they exist to try changes, not to work in.
      timeout: if is_staging then 1800 else 3600,
    },
  },
})
