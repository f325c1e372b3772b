// Command strata runs a strata member. It takes etcd's server flags (and
// ETCD_* variables), so scripts and test frameworks written for an etcd
// binary drive it unchanged.
package main
