'use strict';
// Lets `serverless package` run without AWS credentials when the service has layers.
//
// Serverless v3 asks CloudFormation, while packaging, whether each layer is already deployed
// (to reuse its upload). Without credentials that call fails and packaging stops. This plugin
// skips only that comparison, and only when no credentials are configured: the package is the
// same; a deploy without the comparison would just upload the layer again.
class OfflineLayerPackaging {
  constructor(serverless, _options, { log }) {
    this.hooks = {
      'before:package:compileLayers': () => {
        const { credentials } = serverless.getProvider('aws').getCredentials();
        if (credentials) return;
        const compiler = serverless.pluginManager.plugins.find((p) => typeof p.compareWithLastLayer === 'function');
        if (!compiler) return;
        compiler.compareWithLastLayer = async () => undefined;
        log.info('No AWS credentials: layers are packaged without checking the deployed stack.');
      },
    };
  }
}

module.exports = OfflineLayerPackaging;
