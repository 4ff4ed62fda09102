// Package oci pulls container images from OCI and Docker registries into a
// content-addressed cache and turns an image's root filesystem into a
// read-only disk for a microVM. It owns the cache under ~/.voidbox/oci, the
// reference-to-digest records that let a cached image run offline, and the
// rootfs disk builder; layer extraction lives in oci/unpack.
//
// # Pulling
//
// Store.Pull resolves a reference with go-containerregistry's remote package,
// authenticating with the Docker config and credential helpers
// (authn.DefaultKeychain). Plain HTTP is allowed only for loopback registries
// (localhost, 127.0.0.0/8, ::1) and for registries named in
// Options.Insecure; ggcr would also fall back to HTTP for private (RFC 1918)
// addresses, which the store refuses, since a cleartext pull on a LAN can be
// tampered with. From a multi-platform index the linux/amd64 image is taken
// (the guest is x86-64). Blobs are verified against their digest as they are
// written and stored once, by digest; several layers download at a time and
// Progress reports their bytes.
//
// A reference by digest that is cached is used without any network access. A
// tag is resolved against its registry every time (unless PullOptions.Policy
// says PullMissing); when the registry cannot be reached or does not answer
// within DefaultResolveTimeout, the digest the tag last resolved to is used
// and Image.Warning says so. A registry that answers
// with an error (unknown tag, refused credentials) is never papered over.
//
// # Artifacts
//
// The same store pulls and pushes OCI artifacts (artifact.go), such as the
// guest image: manifests whose artifactType (or config media type) is not a
// container image's. Pull takes one only when PullOptions.ArtifactType names
// its type, and refuses it (ErrWrongType) otherwise, before downloading its
// layers; its blobs are cached, listed, removed and pruned like an image's,
// but never unpacked.
//
// # Cache layout
//
//	DIR/blobs/sha256/HEX     manifests, indexes, configs and compressed layers
//	DIR/refs.json            reference -> image digest (and index digest), resolve time
//	DIR/disks/HEX.ext4       the read-only rootfs disk of image manifest HEX
//	DIR/disks/HEX.json       its metadata (size, the image's user resolved to uid/gid)
//	DIR/disks/HEX.lock       flock: one process builds a given disk, the others wait for it
//	DIR/tmp/                 downloads and builds in progress
//	DIR/lock                 flock: pulls and builds share it, Remove and Prune take it alone
//	DIR/refs.lock            flock: serializes updates of refs.json
//
// Remove drops references and then everything no remaining reference needs;
// Prune does the second half alone (images a moved tag left behind, blobs of
// interrupted pulls, disks of removed images).
//
// # Rootfs disks: ext4 rather than erofs
//
// Store.Disk unpacks the layers (oci/unpack) into a scratch directory and
// builds an ext4 image from it with `mkfs.ext4 -d` (e2fsprogs: no root, no
// loop device), without a journal since the disk is attached read-only. The
// guest kernel has both ext4 and erofs built in; ext4 wins on ownership.
// mkfs.ext4 -d and mkfs.erofs both copy the owner of each file in the source
// directory, which is right only when voidbox runs as root (the unpacker then
// chowns every entry). As an ordinary user every file would belong to that
// user; erofs-utils can only force one owner for the whole tree (--all-root,
// --force-uid), while an ext4 image can be edited after the fact: debugfs
// (also e2fsprogs) sets each inode's uid, gid and mode from what the layers
// said (unpack.Result.Attrs), so an image built without root has the same
// owners and modes (setuid bits, 0000 files) as one built as root. e2fsprogs
// is also on every Debian system already, and debugfs lets tests inspect the
// result. erofs would give smaller disks; ext4 without a journal is close
// enough for images that are decompressed anyway.
//
// Extended attributes (file capabilities, SELinux labels) in layers are not
// carried over; device nodes and FIFOs in layers are skipped (the guest has
// devtmpfs).
package oci
