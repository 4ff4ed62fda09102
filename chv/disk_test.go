package chv

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
)

// Disks become the VmConfig's disks list, in order (the guest's /dev/vda is
// the first), and the body passes the schema check of the fake API. A comma
// in a path is fine: the path travels in JSON.
func TestDisksConfigAccepted(t *testing.T) {
	srv, c := serveFake(t)
	cfg := testConfig(t)
	cfg.Disks = []runtime.Disk{{ID: "root", Path: "/c/a,b/root.ext4", ReadOnly: true}, {ID: "data", Path: "/d/data.raw"}}
	cfg, err := checkConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := pathsIn(cfg.StateDir)
	if err := c.put(context.Background(), "vm.create", buildVMConfig(cfg, paths, 5, nil)); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Disks []map[string]any `json:"disks"`
	}
	if err := json.Unmarshal(srv.Config(), &got); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"path": "/c/a,b/root.ext4", "readonly": true, "id": "root"},
		{"path": "/d/data.raw", "readonly": false, "id": "data"},
	}
	if len(got.Disks) != len(want) {
		t.Fatalf("disks in the VM config: %v, want %v", got.Disks, want)
	}
	for i := range want {
		for k, v := range want[i] {
			if got.Disks[i][k] != v {
				t.Errorf("disks[%d].%s = %v, want %v (config %s)", i, k, got.Disks[i][k], v, srv.Config())
			}
		}
	}
	if vc := buildVMConfig(testConfig(t), paths, 5, nil); vc.Disks != nil {
		t.Errorf("a VM without disks gets %+v", vc.Disks)
	}
}

func TestCheckConfigRejectsDisks(t *testing.T) {
	for want, disks := range map[string][]runtime.Disk{
		`Disks[0].ID "_disk0" must be`:                       {{ID: "_disk0", Path: "/d"}},
		`Disks[1].ID "a" is also Disks[0].ID`:                {{ID: "a", Path: "/d"}, {ID: "a", Path: "/e"}},
		`Disks[0].Path "d.raw" (disk a) must be an absolute`: {{ID: "a", Path: "d.raw"}},
	} {
		cfg := testConfig(t)
		cfg.Disks = disks
		_, err := checkConfig(cfg)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "vm box1") {
			t.Errorf("%v: checkConfig error = %v, want one naming the VM and %q", disks, err, want)
		}
	}
}
