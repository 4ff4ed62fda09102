package fakechv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Snapshot and restore, as Cloud Hypervisor v53 does them (vmm/src/lib.rs, vm.rs,
// migration.rs and memory_manager.rs at the pinned commit):
//
//   - vm.pause and vm.resume follow VmState::valid_transition: only a Running VM
//     pauses and only a Paused one resumes; with no VM at all the answer is "VM is
//     not running". Every refusal is a 500, as api_error_status_code maps them.
//   - vm.snapshot refuses a VM that is not Paused ("Trying to snapshot while VM is
//     running") and a destination_url that is not file:// of an existing directory,
//     then creates (O_EXCL) config.json, state.json and memory-ranges there. The VM
//     stays paused.
//   - vm.restore wants a VMM without a VM; it reads source_url's config.json, then
//     state.json, then memory-ranges (read-only), builds the VM from that config (its
//     devices: serial file, vsock socket) and leaves it Paused.

// Paused is a VM stopped by vm.pause or just restored.
const Paused State = "Paused"

// Files of a snapshot directory (SNAPSHOT_CONFIG_FILE, SNAPSHOT_STATE_FILE and the
// memory manager's SNAPSHOT_FILENAME).
const (
	SnapshotConfigFile = "config.json"
	SnapshotStateFile  = "state.json"
	SnapshotMemoryFile = "memory-ranges"
)

// MemoryMarker is written at the start of a fake snapshot's memory-ranges, so a test
// can tell the guest memory apart from zeroes.
const MemoryMarker = "fakechv guest memory\n"

func apiError(what string, chain ...string) reply {
	return errReply(http.StatusInternalServerError, append([]string{"Error from API", what}, chain...)...)
}

func (s *Server) pause() reply {
	return s.transition("The VM could not be paused", "pause", Running, Paused)
}

func (s *Server) resume() reply {
	rep := s.transition("The VM could not resume", "resume", Paused, Running)
	if rep.status == http.StatusNoContent {
		rep.before = s.OnResume
	}
	return rep
}

// transition moves a VM from one state to another as vm.pause and vm.resume do:
// without a booted VM the answer is "VM is not running", from any state but from
// it is VmState::valid_transition's refusal.
func (s *Server) transition(what, verb string, from, to State) reply {
	switch s.state {
	case NotCreated, Created:
		return apiError(what, "VM is not running")
	case from:
		s.state = to
		return reply{status: http.StatusNoContent}
	}
	return apiError(what, "Cannot "+verb+" VM", "Failed to "+verb+" migratable component",
		fmt.Sprintf("Invalid transition: InvalidStateTransition(%s, %s)", s.state, to))
}

// urlToPath is migration.rs's url_to_path: file://PATH of an existing directory.
// Its failure is the message the real VMM puts last in its error chain (the
// messages below are the VMM's, capitalised as it sends them, so they are
// strings rather than Go errors).
func urlToPath(url string) (path, failure string) {
	p, ok := strings.CutPrefix(url, "file://")
	if !ok {
		return "", "Could not extract path from URL: " + url
	}
	if st, err := os.Stat(p); err != nil || !st.IsDir() {
		return "", "Destination is not a directory"
	}
	return p, ""
}

func (s *Server) snapshot(body []byte) reply {
	const what = "The VM could not be snapshotted"
	switch s.state {
	case NotCreated, Created:
		return apiError(what, "VM is not running")
	case Running, Shutdown:
		// vm.rs snapshot(): anything but Paused.
		return apiError(what, "Cannot snapshot VM", "Failed to snapshot migratable component", "Trying to snapshot while VM is running")
	}
	var in struct {
		DestinationURL string `json:"destination_url"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return errReply(http.StatusBadRequest, "Failed to deserialize JSON", err.Error())
	}
	dir, failure := urlToPath(in.DestinationURL)
	if failure == "" {
		failure = s.writeSnapshot(dir)
	}
	if failure != "" {
		return apiError(what, "Cannot send VM snapshot", "Failed to send migratable component snapshot", failure)
	}
	return reply{status: http.StatusNoContent}
}

// writeSnapshot writes what the real VMM would: its whole VmConfig (the created
// config with the defaults it fills in), a device state, and guest RAM. It returns
// the VMM's message on failure, "" on success.
func (s *Server) writeSnapshot(dir string) string {
	var cfg map[string]any
	d := json.NewDecoder(bytes.NewReader(s.config))
	d.UseNumber()
	if err := d.Decode(&cfg); err != nil {
		return "Error serializing VM config snapshot: " + err.Error()
	}
	// Serialized VmConfig carries every field, defaults included.
	for k, v := range map[string]any{"iommu": false, "watchdog": false, "pvpanic": false} {
		if _, ok := cfg[k]; !ok {
			cfg[k] = v
		}
	}
	mem, _ := cfg["memory"].(map[string]any)
	if mem == nil {
		return "Error serializing VM config snapshot: no memory section"
	}
	for k, v := range map[string]any{"mergeable": false, "hotplug_method": "Acpi", "hugepages": false, "prefault": false, "thp": true} {
		if _, ok := mem[k]; !ok {
			mem[k] = v
		}
	}
	n, _ := mem["size"].(json.Number)
	size, err := n.Int64()
	if err != nil || size <= 0 {
		return fmt.Sprintf("Error serializing VM config snapshot: memory size %v", mem["size"])
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		return err.Error()
	}
	state, err := json.Marshal(map[string]any{"snapshot_data": map[string]any{"vm-section": map[string]any{"snapshot": []int{1, 2, 3}}},
		"fakechv": map[string]any{"version": s.Version}})
	if err != nil {
		return err.Error()
	}
	if err := createNew(filepath.Join(dir, SnapshotConfigFile), config, 0); err != nil {
		return "Error creating VM config snapshot file: " + err.Error()
	}
	if err := createNew(filepath.Join(dir, SnapshotStateFile), state, 0); err != nil {
		return "Error creating VM state snapshot file: " + err.Error()
	}
	if err := createNew(filepath.Join(dir, SnapshotMemoryFile), []byte(MemoryMarker), size); err != nil {
		return fmt.Sprintf("Error creating memory snapshot file %q: %v", filepath.Join(dir, SnapshotMemoryFile), err)
	}
	return ""
}

// createNew is OpenOptions::create_new: it fails when path exists. size > 0 makes the
// file that long (sparse past data), as guest RAM would be.
func createNew(path string, data []byte, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && size > 0 {
		err = f.Truncate(size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// RestoreConfig is the body of vm.restore as the real server reads it.
type RestoreConfig struct {
	SourceURL         string `json:"source_url"`
	Prefault          bool   `json:"prefault"`
	MemoryRestoreMode string `json:"memory_restore_mode"`
	Resume            bool   `json:"resume"`
}

func (s *Server) restore(body []byte) reply {
	const what = "The VM could not be restored"
	if s.state != NotCreated {
		return apiError(what, "VM is already created")
	}
	var in RestoreConfig
	if err := json.Unmarshal(body, &in); err != nil {
		return errReply(http.StatusBadRequest, "Failed to deserialize JSON", err.Error())
	}
	fail := func(step string, err error) reply {
		return apiError(what, "Cannot restore VM", step, err.Error())
	}
	dir, failure := urlToPath(in.SourceURL)
	if failure != "" {
		return apiError(what, "Cannot restore VM", "Failed to send migratable component snapshot", failure)
	}
	config, err := os.ReadFile(filepath.Join(dir, SnapshotConfigFile))
	if err != nil {
		return fail("Failed to send migratable component snapshot", err)
	}
	var cfg struct {
		Memory struct {
			Size int64 `json:"size"`
		} `json:"memory"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return fail("Failed to receive migratable component snapshot", err)
	}
	if in.Prefault && in.MemoryRestoreMode == "OnDemand" {
		return errReply(http.StatusBadRequest, "Error from API", what, "Error validating configuration", "prefault is not supported with on-demand memory restore")
	}
	state, err := os.ReadFile(filepath.Join(dir, SnapshotStateFile))
	if err != nil {
		return fail("Failed to send migratable component snapshot", err)
	}
	var st struct {
		Data map[string]json.RawMessage `json:"snapshot_data"`
	}
	if err := json.Unmarshal(state, &st); err != nil {
		return fail("Failed to receive migratable component snapshot", err)
	}
	if st.Data["vm-section"] == nil {
		return apiError(what, "Cannot restore VM", "Failed to restore migratable component", "Could not find VM config snapshot section")
	}
	mem, err := os.Open(filepath.Join(dir, SnapshotMemoryFile)) // read-only, as the real VMM opens it
	if err != nil {
		return apiError(what, "Cannot restore VM", "Error creating the memory manager", "Cannot open the snapshot file", err.Error())
	}
	fi, err := mem.Stat()
	mem.Close()
	if err == nil && fi.Size() < cfg.Memory.Size {
		err = fmt.Errorf("memory-ranges holds %d bytes, the config's memory is %d", fi.Size(), cfg.Memory.Size)
	}
	if err != nil {
		return apiError(what, "Cannot restore VM", "Error creating the memory manager", "Cannot read the snapshot file", err.Error())
	}
	if hook := s.OnRestore; hook != nil {
		if err := hook(config); err != nil {
			return apiError(what, "Cannot restore VM", "Error creating device manager", err.Error())
		}
	}
	s.state, s.config = Paused, json.RawMessage(config)
	return reply{status: http.StatusNoContent}
}
