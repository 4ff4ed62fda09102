package builtins

import (
	"fmt"

	"github.com/voidbox/voidbox/network"
	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
)

// boxArgs holds box()'s raw arguments; nil means "not given".
type boxArgs struct {
	name, cmd, prompt, image, skills, llm    starlark.Value
	memoryMB, vcpus, network, egress, mounts starlark.Value
	ports                                    starlark.Value
	env, timeout, retries, onFailure, allow  starlark.Value
	steps, outputStep, outputFile            starlark.Value // workflow.go
}

// boxBuiltin implements box(name, cmd=None, prompt=None, image=None, skills=[],
// llm=None, memory_mb=512, vcpus=1, network=False, egress=[], ports=[], mounts=[], env={},
// timeout="10m", retries=0, on_failure="stop", allow=[], steps=[], output_step=None,
// output_file=None).
func boxBuiltin(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var a boxArgs
	// Every parameter is unpacked as a plain Value so that type errors use our
	// wording ("memory_mb must be an int, got string") rather than UnpackArgs'.
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs,
		"name", &a.name, "cmd?", &a.cmd, "prompt?", &a.prompt, "image?", &a.image,
		"skills?", &a.skills, "llm?", &a.llm, "memory_mb?", &a.memoryMB, "vcpus?", &a.vcpus,
		"network?", &a.network, "egress?", &a.egress, "ports?", &a.ports, "mounts?", &a.mounts, "env?", &a.env,
		"timeout?", &a.timeout, "retries?", &a.retries, "on_failure?", &a.onFailure,
		"allow?", &a.allow, "steps?", &a.steps, "output_step?", &a.outputStep, "output_file?", &a.outputFile); err != nil {
		return nil, err
	}
	b, err := makeBox(&a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	b.stage.Pos = userPos(thread)
	return b, nil
}

// orDefault fills an omitted argument with its default.
func orDefault(v, def starlark.Value) starlark.Value {
	if v == nil {
		return def
	}
	return v
}

func makeBox(a *boxArgs) (*Box, error) {
	b := &Box{}
	s := &b.stage
	var err error
	if s.Name, err = wantString("name", a.name); err != nil {
		return nil, err
	}
	if err := checkStageName(s.Name); err != nil {
		return nil, err
	}
	if a.cmd != nil && a.cmd != starlark.None {
		if s.Cmd, err = wantStringList("cmd", a.cmd); err != nil {
			return nil, err
		}
		if len(s.Cmd) == 0 {
			return nil, fmt.Errorf("cmd must not be empty; give the program and its arguments, e.g. [\"tr\", \"a-z\", \"A-Z\"]")
		}
		// Arguments may be empty strings (printf "" is real); the program name may not.
		if s.Cmd[0] == "" {
			return nil, fmt.Errorf("cmd[0] must not be empty (the program to run)")
		}
	}
	prompt, hasPrompt, err := wantOptString("prompt", a.prompt)
	if err != nil {
		return nil, err
	}
	if hasPrompt && prompt == "" {
		return nil, fmt.Errorf("prompt must not be empty")
	}
	s.Prompt = prompt
	if img, ok, err := wantOptString("image", a.image); err != nil {
		return nil, err
	} else if ok {
		if err := checkImageRef(img); err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
		s.Image = img
	}
	if err := b.setSkillsAndLLM(a); err != nil {
		return nil, err
	}
	if err := b.setResources(a); err != nil {
		return nil, err
	}
	if err := b.setNetwork(a); err != nil {
		return nil, err
	}
	if err := b.setPorts(a); err != nil {
		return nil, err
	}
	if err := b.setMountsAndEnv(a); err != nil {
		return nil, err
	}
	if err := b.setFailure(a); err != nil {
		return nil, err
	}
	if err := b.setWorkflow(a); err != nil {
		return nil, err
	}
	if err := b.checkWorkflowKind(); err != nil {
		return nil, err
	}
	return b, b.checkKind()
}

// checkKind enforces "a box is exactly one of a command or an agent".
func (b *Box) checkKind() error {
	s := &b.stage
	hasAgent := false
	for _, sk := range b.skills {
		if sk.skill.Kind == runtime.SkillAgent {
			hasAgent = true
		}
	}
	switch {
	case s.Cmd != nil && s.Prompt != "":
		return fmt.Errorf("give either cmd (a command box) or prompt (an agent box), not both")
	case s.Cmd == nil && s.Prompt == "" && len(s.Steps) == 0:
		return fmt.Errorf("give cmd (a list of strings) for a command box, or prompt with an agent skill (skill(\"agent:claude-code\")) for an agent box")
	case s.Prompt != "" && !hasAgent:
		return fmt.Errorf("prompt needs an agent skill in skills, e.g. skills = [skill(\"agent:claude-code\")]")
	case s.Prompt != "" && len(s.Allow) > 0:
		// The guest checks the list on the program it starts; an agent's tools run
		// commands it never sees, so the list would promise what nothing enforces.
		return fmt.Errorf("allow is for a command box: an agent box's tool commands are not checked against it; remove allow")
	case s.Cmd != nil && b.llm != nil:
		// Nothing in a command box would talk to the model: refused, not ignored.
		return fmt.Errorf("llm is for an agent box (prompt=); a command box runs no model: remove llm")
	}
	return nil
}

func (b *Box) setSkillsAndLLM(a *boxArgs) error {
	if a.skills != nil {
		elems, err := wantList("skills", "a list of skills", a.skills)
		if err != nil {
			return err
		}
		for i, e := range elems {
			sk, ok := e.(*Skill)
			if !ok {
				return typeErr(fmt.Sprintf("skills[%d]", i), "a skill (from skill())", e)
			}
			b.skills = append(b.skills, sk)
		}
	}
	if a.llm != nil && a.llm != starlark.None {
		l, ok := a.llm.(*LLM)
		if !ok {
			return typeErr("llm", "an llm (from llm.claude, llm.ollama or llm.custom)", a.llm)
		}
		b.llm = l
	}
	return nil
}

// AgentMemoryMB and AgentVCPUs are an agent box's defaults (512 MiB and 1 vCPU for a
// command box).
const (
	AgentMemoryMB = 1024
	AgentVCPUs    = 2
)

func (b *Box) setResources(a *boxArgs) error {
	s := &b.stage
	var err error
	// An agent box runs claude-code, a large program with a JavaScript runtime: it gets
	// more unless the box says otherwise.
	memory, vcpus := 512, 1
	if s.Prompt != "" {
		memory, vcpus = AgentMemoryMB, AgentVCPUs
	}
	if s.MemoryMB, err = wantIntIn("memory_mb", orDefault(a.memoryMB, starlark.MakeInt(memory)), runtime.MinMemoryMB, runtime.MaxMemoryMB); err != nil {
		return err
	}
	if s.VCPUs, err = wantIntIn("vcpus", orDefault(a.vcpus, starlark.MakeInt(vcpus)), 1, 64); err != nil {
		return err
	}
	if s.Timeout, err = parseTimeout("timeout", orDefault(a.timeout, starlark.String("10m"))); err != nil {
		return err
	}
	if a.allow != nil {
		if s.Allow, err = wantStringList("allow", a.allow); err != nil {
			return err
		}
		for i, c := range s.Allow {
			if c == "" {
				return fmt.Errorf("allow[%d] must not be empty", i)
			}
		}
	}
	return nil
}

func (b *Box) setNetwork(a *boxArgs) error {
	s := &b.stage
	var err error
	if s.Network, err = wantBool("network", orDefault(a.network, starlark.False)); err != nil {
		return err
	}
	if a.egress == nil {
		return nil
	}
	if s.Egress, err = wantStringList("egress", a.egress); err != nil {
		return err
	}
	if len(s.Egress) > 0 && !s.Network {
		return fmt.Errorf("egress needs network = True (a box without network has no NIC to allow traffic on)")
	}
	// The policy the VM's network enforces parses the entries here too, so that
	// voidbox check refuses exactly what the network would.
	_, err = network.ParsePolicy(s.Egress)
	return err
}

func (b *Box) setPorts(a *boxArgs) error {
	if a.ports == nil {
		return nil
	}
	list, err := wantStringList("ports", a.ports)
	if err != nil {
		return err
	}
	if len(list) > 0 && !b.stage.Network {
		return fmt.Errorf("ports needs network = True (a box without network has no NIC to publish a port from)")
	}
	seen := map[int]bool{}
	for i, p := range list {
		m, err := runtime.ParsePortMap(p)
		if err != nil {
			return fmt.Errorf("ports[%d] %w", i, err)
		}
		if seen[m.Host] {
			return fmt.Errorf("ports[%d] %q: host port %d is published twice", i, p, m.Host)
		}
		seen[m.Host] = true
		b.stage.Ports = append(b.stage.Ports, m)
	}
	return nil
}

func (b *Box) setMountsAndEnv(a *boxArgs) error {
	s := &b.stage
	if a.mounts != nil {
		elems, err := wantList("mounts", "a list of mounts", a.mounts)
		if err != nil {
			return err
		}
		guests := map[string]bool{}
		for i, e := range elems {
			m, ok := e.(*Mount)
			if !ok {
				return typeErr(fmt.Sprintf("mounts[%d]", i), "a mount (from mount())", e)
			}
			if guests[m.mount.Guest] {
				return fmt.Errorf("mounts[%d]: guest path %q is already used by another mount", i, m.mount.Guest)
			}
			guests[m.mount.Guest] = true
			b.mounts = append(b.mounts, m)
		}
	}
	if a.env != nil {
		env, err := wantEnv("env", a.env)
		if err != nil {
			return err
		}
		s.Env = env
	}
	return nil
}

func (b *Box) setFailure(a *boxArgs) error {
	s := &b.stage
	var err error
	if s.Retries, err = wantIntIn("retries", orDefault(a.retries, starlark.MakeInt(0)), 0, 10); err != nil {
		return err
	}
	of, err := wantString("on_failure", orDefault(a.onFailure, starlark.String("stop")))
	if err != nil {
		return err
	}
	switch runtime.FailurePolicy(of) {
	case runtime.FailStop, runtime.FailContinue:
		s.OnFailure = runtime.FailurePolicy(of)
	default:
		return fmt.Errorf("on_failure must be \"stop\" or \"continue\", got %q", of)
	}
	return nil
}

// toStage builds the runtime stage for a box; nothing in it is shared with the
// value, so the executor may keep or change it freely.
func (b *Box) toStage() *runtime.Stage {
	s := b.stage
	s.Cmd = cloneStrings(s.Cmd)
	s.Steps = nil
	for _, st := range b.stage.Steps {
		st.Args, st.DependsOn = cloneStrings(st.Args), cloneStrings(st.DependsOn)
		s.Steps = append(s.Steps, st)
	}
	s.Egress = cloneStrings(s.Egress)
	s.Allow = cloneStrings(s.Allow)
	s.Env = cloneMap(s.Env)
	s.Skills = nil
	for _, sk := range b.skills {
		k := sk.skill
		k.Args = cloneStrings(k.Args)
		k.Env = cloneMap(k.Env)
		s.Skills = append(s.Skills, k)
	}
	if b.llm != nil {
		l := b.llm.llm
		s.LLM = &l
	}
	s.Mounts = nil
	for _, m := range b.mounts {
		s.Mounts = append(s.Mounts, m.mount)
	}
	return &s
}

func cloneStrings(ss []string) []string {
	if ss == nil {
		return nil
	}
	return append([]string{}, ss...)
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
