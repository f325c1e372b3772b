// Package faultproxy is the fault-injecting TCP proxy of the robustness
// suite: one Proxy sits on each peer and client link of a test cluster, so
// that a test can partition a member, slow a link, or cut its connections,
// while the processes on either side run unmodified.
//
// A proxy forwards bytes, not packets, so it injects the faults a TCP
// connection shows:
//
//   - a partition (Faults.Blackhole) passes nothing either way until it
//     heals; what was sent meanwhile arrives afterwards, in order, as TCP
//     retransmits it, and senders block once buffers fill. A new
//     connection is accepted and hangs until the heal.
//   - delay holds every chunk for a fixed time plus jitter, in order;
//   - loss stands for dropped packets by holding a chunk as long as TCP's
//     retransmission would (a byte stream cannot lose bytes and stay a
//     stream);
//   - Reset closes every live connection, as a peer restart or a
//     middlebox's RST does.
//
// Faults apply to open connections and new ones alike.
package faultproxy
