package builtins

import (
	"fmt"
	"path"
	"strings"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
)

// knownAgents are the coding agents "agent:NAME" may name; the guest image must know
// how to start each one.
var knownAgents = []string{"claude-code"}

const skillPrefixes = `"file:", "agent:", "cli:", "mcp:", "remote:" (or the keyword forms skill(image=REF, mount=PATH) and skill(mcp=COMMAND, args=[...]))`

// skillBuiltin implements skill(spec, description="") and its keyword forms
// skill(image=REF, mount=PATH) and skill(mcp=COMMAND, args=[], env={}).
func skillBuiltin(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var spec, description, image, mountPath, mcp, mcpArgs, mcpEnv starlark.Value
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs,
		"spec?", &spec, "description?", &description, "image?", &image, "mount?", &mountPath,
		"mcp?", &mcp, "args?", &mcpArgs, "env?", &mcpEnv); err != nil {
		return nil, err
	}
	sk, err := makeSkill(callerFile(thread), spec, image, mountPath, mcp, mcpArgs, mcpEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if description != nil {
		d, err := wantString("description", description)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
		sk.Description = d
	}
	return &Skill{skill: *sk}, nil
}

func makeSkill(caller string, spec, image, mountPath, mcp, mcpArgs, mcpEnv starlark.Value) (*runtime.Skill, error) {
	forms := 0
	for _, v := range []starlark.Value{spec, image, mcp} {
		if v != nil {
			forms++
		}
	}
	if forms != 1 {
		return nil, fmt.Errorf("give exactly one of a spec string (like \"agent:claude-code\"), image= or mcp=")
	}
	if mountPath != nil && image == nil {
		return nil, fmt.Errorf("mount= only goes with image=, e.g. skill(image=\"ghcr.io/org/tools:1\", mount=\"/opt/tools\")")
	}
	if (mcpArgs != nil || mcpEnv != nil) && mcp == nil {
		return nil, fmt.Errorf("args= and env= only go with mcp=, e.g. skill(mcp=\"npx\", args=[\"-y\", \"server\"])")
	}
	switch {
	case image != nil:
		return imageSkill(image, mountPath)
	case mcp != nil:
		return mcpSkill(mcp, mcpArgs, mcpEnv)
	}
	s, err := wantString("spec", spec)
	if err != nil {
		return nil, err
	}
	return parseSkillSpec(caller, s)
}

// parseSkillSpec handles the "kind:value" string forms.
func parseSkillSpec(caller, spec string) (*runtime.Skill, error) {
	kind, val, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("spec %q has no kind prefix; valid prefixes are %s", spec, skillPrefixes)
	}
	if val == "" && kind != "file" {
		return nil, fmt.Errorf("spec %q has nothing after %q", spec, kind+":")
	}
	switch runtime.SkillKind(kind) {
	case runtime.SkillFile:
		where, content, err := readSkillFile(caller, val)
		if err != nil {
			return nil, err
		}
		return &runtime.Skill{Kind: runtime.SkillFile, Name: path.Base(strings.ReplaceAll(where, "\\", "/")), Path: where, Content: content}, nil
	case runtime.SkillAgent:
		for _, a := range knownAgents {
			if val == a {
				return &runtime.Skill{Kind: runtime.SkillAgent, Name: val}, nil
			}
		}
		return nil, fmt.Errorf("unknown agent %q; known agents: %s", val, strings.Join(knownAgents, ", "))
	case runtime.SkillCLI:
		if !cliNameRE.MatchString(val) {
			return nil, fmt.Errorf("cli name %q must be a command name (letters, digits, '_', '.', '+', '-'), not a path or a command line", val)
		}
		return &runtime.Skill{Kind: runtime.SkillCLI, Name: val}, nil
	case runtime.SkillMCP:
		// The string form splits on white space; arguments containing spaces need
		// the keyword form skill(mcp=..., args=[...]).
		f := strings.Fields(val)
		if len(f) == 0 {
			return nil, fmt.Errorf("spec %q has nothing after \"mcp:\"", spec)
		}
		return &runtime.Skill{Kind: runtime.SkillMCP, Name: path.Base(f[0]), Command: f[0], Args: f[1:]}, nil
	case runtime.SkillRemote:
		if err := checkHTTPURL("remote", val); err != nil {
			return nil, err
		}
		return &runtime.Skill{Kind: runtime.SkillRemote, Name: val, URL: val}, nil
	}
	return nil, fmt.Errorf("unknown skill kind %q in %q; valid prefixes are %s", kind, spec, skillPrefixes)
}

func imageSkill(image, mountPath starlark.Value) (*runtime.Skill, error) {
	ref, err := wantString("image", image)
	if err != nil {
		return nil, err
	}
	if err := checkImageRef(ref); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if mountPath == nil {
		return nil, fmt.Errorf("image= needs mount=, the absolute guest path to mount the image at")
	}
	mp, err := wantString("mount", mountPath)
	if err != nil {
		return nil, err
	}
	if err := checkGuestPath("mount", mp); err != nil {
		return nil, err
	}
	return &runtime.Skill{Kind: runtime.SkillImage, Name: ref, Image: ref, MountPath: mp}, nil
}

func mcpSkill(mcp, mcpArgs, mcpEnv starlark.Value) (*runtime.Skill, error) {
	cmd, err := wantString("mcp", mcp)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(cmd) == "" {
		return nil, fmt.Errorf("mcp must name a command, got an empty string")
	}
	sk := &runtime.Skill{Kind: runtime.SkillMCP, Name: path.Base(cmd), Command: cmd}
	if mcpArgs != nil {
		if sk.Args, err = wantStringList("args", mcpArgs); err != nil {
			return nil, err
		}
	}
	if mcpEnv != nil {
		if sk.Env, err = wantEnv("env", mcpEnv); err != nil {
			return nil, err
		}
	}
	return sk, nil
}
