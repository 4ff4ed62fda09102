package builtins

import (
	"fmt"
	"os"
	"strings"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// llmModule is the "llm" namespace: llm.claude, llm.ollama, llm.custom. Its builtins
// carry the dotted names so errors read "llm.ollama: ...".
func llmModule() *starlarkstruct.Module {
	return &starlarkstruct.Module{
		Name: "llm",
		Members: starlark.StringDict{
			"claude": starlark.NewBuiltin("llm.claude", llmClaude),
			"ollama": starlark.NewBuiltin("llm.ollama", llmOllama),
			"custom": starlark.NewBuiltin("llm.custom", llmCustom),
		},
	}
}

// wantModel checks the model parameter every provider takes.
func wantModel(v starlark.Value) (string, error) {
	m, err := wantString("model", v)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(m) == "" {
		return "", fmt.Errorf("model must not be empty")
	}
	return m, nil
}

func llmClaude(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var model starlark.Value = starlark.String("claude-sonnet-4-5")
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "model?", &model); err != nil {
		return nil, err
	}
	m, err := wantModel(model)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return &LLM{llm: runtime.LLM{Provider: "claude", Model: m, APIKeyEnv: "ANTHROPIC_API_KEY"}}, nil
}

func llmOllama(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var model starlark.Value
	var baseURL starlark.Value = starlark.String("http://127.0.0.1:11434")
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "model", &model, "base_url?", &baseURL); err != nil {
		return nil, err
	}
	l, err := makeLLM("ollama", model, baseURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return l, nil
}

func llmCustom(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var baseURL, model starlark.Value
	var keyEnv starlark.Value = starlark.String("")
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "base_url", &baseURL, "model", &model, "api_key_env?", &keyEnv); err != nil {
		return nil, err
	}
	l, err := makeLLM("custom", model, baseURL, keyEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return l, nil
}

func makeLLM(provider string, model, baseURL, keyEnv starlark.Value) (*LLM, error) {
	m, err := wantModel(model)
	if err != nil {
		return nil, err
	}
	u, err := wantString("base_url", baseURL)
	if err != nil {
		return nil, err
	}
	if err := checkHTTPURL("base_url", u); err != nil {
		return nil, err
	}
	l := runtime.LLM{Provider: provider, Model: m, BaseURL: u}
	if keyEnv != nil {
		k, err := wantString("api_key_env", keyEnv)
		if err != nil {
			return nil, err
		}
		if k != "" && !envNameRE.MatchString(k) {
			return nil, fmt.Errorf("api_key_env %q is not a valid environment variable name (letters, digits and '_', not starting with a digit)", k)
		}
		l.APIKeyEnv = k
	}
	return &LLM{llm: l}, nil
}

// mountBuiltin implements mount(host, guest, mode="ro").
func mountBuiltin(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var host, guest starlark.Value
	var mode starlark.Value = starlark.String("ro")
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "host", &host, "guest", &guest, "mode?", &mode); err != nil {
		return nil, err
	}
	m, err := makeMount(callerFile(thread), host, guest, mode)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return &Mount{mount: *m}, nil
}

func makeMount(caller string, host, guest, mode starlark.Value) (*runtime.Mount, error) {
	h, err := wantString("host", host)
	if err != nil {
		return nil, err
	}
	g, err := wantString("guest", guest)
	if err != nil {
		return nil, err
	}
	md, err := wantString("mode", mode)
	if err != nil {
		return nil, err
	}
	if md != string(runtime.MountRO) && md != string(runtime.MountRW) {
		return nil, fmt.Errorf("mode must be \"ro\" or \"rw\", got %q", md)
	}
	if err := checkGuestPath("guest", g); err != nil {
		return nil, err
	}
	// A library shipped inside the binary has no host directory of its own to
	// share; a mount there would silently mean "somewhere under the user's cwd".
	if _, ok := inStdlib(caller); ok {
		return nil, fmt.Errorf("cannot be called from the embedded library (%s); take a mount as a parameter instead", caller)
	}
	if h == "" {
		return nil, fmt.Errorf("host must not be empty; use \".\" for the script's directory")
	}
	abs, err := resolveHost(caller, h)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("host directory %s does not exist", abs)
		}
		return nil, fmt.Errorf("host directory %s: %w", abs, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("host path %s is not a directory; mount a directory", abs)
	}
	return &runtime.Mount{Host: abs, Guest: g, Mode: runtime.MountMode(md)}, nil
}
