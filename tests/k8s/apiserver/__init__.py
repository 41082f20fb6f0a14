"""A real kube-apiserver 1.20 + etcd for the tests: build (build.sh), start and set up (cluster.py), and the
controllers tests play on it (controllers.py). See tests/k8s/README.md."""
