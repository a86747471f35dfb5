"""The thin kit every algorithm shares: config, envs, nets, buffers, the run folder, evaluation, registry."""
