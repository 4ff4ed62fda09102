// Package vmstate owns the host-side process and state-directory conventions
// every VMM driver (qemu, chv) shares: starting a VMM or helper process so
// that it dies with voidbox (also after it changed its uid), naming a VM's
// state directory os.TempDir()/voidbox-<ownerpid>-*, the pids file listing a
// VM's processes, capturing a serial console with a cap, reading the tail of a
// log file, and sweeping the state directories (and their still-running
// processes) left behind by voidbox processes that died. Everything here reads
// files in a temp dir other users share: only regular files, never through a
// symlink, bounded.
package vmstate
