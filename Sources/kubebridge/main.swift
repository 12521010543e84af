import ArgumentParser

Kubebridge.main()
