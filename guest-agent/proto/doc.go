// Package proto is the wire protocol between the voidbox host and the guest agent
// (PID 1 inside each microVM). It owns the boot configuration carried on the kernel
// command line, the authenticated, versioned handshake, the framing used on each
// multiplexed stream, and the host-side Client that the VM sandbox drives.
//
// A session is: handshake (length-prefixed JSON hellos, HMAC challenge-response on a
// per-VM secret, both directions) on the raw transport, then hashicorp/yamux with the
// host as the yamux client. Every request is one yamux stream that starts with a
// bounded JSON request frame, followed by typed, bounded frames. The guest opens
// streams too, one per connection to a forward (a guest loopback port carried to
// a service the host registered: forward.go), starting with an open frame.
package proto
