// Package snapshot is the store of warm-start snapshots under ~/.voidbox/snapshots: one
// directory per key (guest image digest, memory, vCPUs, VMM with its accelerator and
// version, and this package's format version) holding what the VMM saved of a guest
// booted to the agent's idle point, and meta.json with the key, the snapshot guest's
// agent secret and a checksum of every file. Directories are 0700 and files 0600 (the
// secret and the guest's memory are in them); a snapshot appears whole or not at all
// (built in a temporary directory, then renamed); a lock file per key keeps two voidbox
// processes from building the same snapshot at once; Load verifies the checksums, so a
// truncated or altered snapshot is reported instead of restored.
package snapshot
