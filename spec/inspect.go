package spec

import (
	"fmt"
	"strings"

	"github.com/voidbox/voidbox/runtime"
)

// Inspect renders a loaded spec for `voidbox inspect`: what it is and where it runs,
// the stage graph with each stage's sandbox and capabilities (as `voidbox check`
// prints a program's), and each workflow stage's steps with their dependencies.
func Inspect(s *Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: kind %s, name %q, sandbox mode %s", s.File, s.Kind, s.Name, s.Mode)
	for _, kv := range [][2]string{{"kernel", s.Kernel}, {"initramfs", s.Initramfs}, {"guest_image", s.GuestImage}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, ", %s %s", kv[0], kv[1])
		}
	}
	b.WriteString("\n")
	b.WriteString(runtime.Describe(s.Graph))
	for _, st := range s.Graph.Stages() {
		if len(st.Steps) == 0 {
			continue
		}
		fmt.Fprintf(&b, "steps of %s (one sandbox; steps whose dependencies are done run at the same time):\n", st.Name)
		for _, step := range st.Steps {
			fmt.Fprintf(&b, "  %s  cmd=%q", step.Name, step.Args)
			if len(step.DependsOn) > 0 {
				fmt.Fprintf(&b, " after=%s", strings.Join(step.DependsOn, ","))
			}
			if step.StdinFrom != "" {
				fmt.Fprintf(&b, " stdin=%s", step.StdinFrom)
			}
			if step.Timeout > 0 {
				fmt.Fprintf(&b, " timeout=%s", step.Timeout)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
