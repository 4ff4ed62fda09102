package vm

import (
	"slices"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
)

func TestCollectAgentSkills(t *testing.T) {
	a := collectAgentSkills([]runtime.Skill{
		{Kind: runtime.SkillMCP, Name: "srv", Command: "/opt/x/bin/My Server", Args: []string{"--a"}},
		{Kind: runtime.SkillMCP, Name: "srv", Command: "my-server"},
		{Kind: runtime.SkillRemote, URL: "https://mcp.example.test:8443/mcp"},
		{Kind: runtime.SkillCLI, Name: "jq"},
		{Kind: runtime.SkillImage, MountPath: "/opt/tools"},
		{Kind: runtime.SkillFile, Name: "x.md"},
	})
	if len(a.mcp) != 3 || a.mcp["my-server"].Command != "/opt/x/bin/My Server" || a.mcp["my-server-2"].Command != "my-server" ||
		a.mcp["mcp-example-test"].URL != "https://mcp.example.test:8443/mcp" || a.mcp["mcp-example-test"].Type != "http" {
		t.Errorf("mcp servers %+v", a.mcp)
	}
	if !slices.Equal(a.tools, []string{"jq"}) || !slices.Equal(a.path, []string{"/opt/tools/bin", "/opt/tools/usr/local/bin", "/opt/tools/usr/bin"}) {
		t.Errorf("tools %v, path %v", a.tools, a.path)
	}
}

func TestRemoteEgress(t *testing.T) {
	spec := runtime.SandboxSpec{Agent: true, Network: true, Skills: []runtime.Skill{
		{Kind: runtime.SkillRemote, URL: "https://mcp.example.test/mcp"}, {Kind: runtime.SkillRemote, URL: "http://10.1.2.3:8080/x"}}}
	got, err := remoteEgress(spec)
	if err != nil || !slices.Equal(got, []string{"mcp.example.test:443", "10.1.2.3:8080"}) {
		t.Errorf("egress %v, %v", got, err)
	}
	spec.Network = false
	if _, err := remoteEgress(spec); err == nil || !strings.Contains(err.Error(), "needs network = True") {
		t.Errorf("a remote skill without network: %v", err)
	}
}
