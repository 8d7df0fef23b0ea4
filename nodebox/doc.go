// Package nodebox reads the middleboxes a node can see for itself: the
// conntrack table of each network namespace a flow crosses on this node
// (its established timeout, and per flow the time left before the entry
// is forgotten) and kube-proxy's IPVS TCP timeout, read over netlink as
// `ipvsadm -l --timeout` shows it. With them a socket scan judges every
// connection against the smallest timeout that applies to it
// (`--max-idle auto`) and tells a connection the kernel still holds
// ESTABLISHED from one whose NAT has already forgotten it (verdict dead).
//
// A reading never changes what it reads: conntrack is dumped, never
// updated, and IPVS is only asked for its configuration.
package nodebox
