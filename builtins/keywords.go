package builtins

import (
	"fmt"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// go.starlark.net's positional-only builtins (len, json.encode, math.sqrt, ...) answer a
// keyword argument with "NAME: unexpected keyword arguments", naming none of them. A
// program sees those builtins through Predeclared, so they are wrapped to name the first
// one, as box() and the other DSL builtins do: `len: unexpected keyword argument "x"`.

// namingKeywords returns b under the same name, with that one message made precise.
// Everything else passes through: CallInternal runs b in the wrapper's frame, so
// positions, other errors and their causes are b's own.
func namingKeywords(b *starlark.Builtin) *starlark.Builtin {
	vague := b.Name() + ": unexpected keyword arguments"
	return starlark.NewBuiltin(b.Name(), func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		v, err := b.CallInternal(thread, args, kwargs)
		if err != nil && len(kwargs) > 0 && err.Error() == vague {
			return nil, fmt.Errorf("%s: unexpected keyword argument %s", b.Name(), kwargs[0][0])
		}
		return v, err
	})
}

// namingModule is m with every builtin member wrapped by namingKeywords.
func namingModule(m *starlarkstruct.Module) *starlarkstruct.Module {
	members := make(starlark.StringDict, len(m.Members))
	for k, v := range m.Members {
		if b, ok := v.(*starlark.Builtin); ok {
			v = namingKeywords(b)
		}
		members[k] = v
	}
	return &starlarkstruct.Module{Name: m.Name, Members: members}
}

// universe is Starlark's universal builtins wrapped by namingKeywords; Predeclared names
// shadow universal ones, so programs call these. set stays universal: the resolver only
// applies the dialect's "no sets" option to the universal name.
func universe() starlark.StringDict {
	out := starlark.StringDict{}
	for k, v := range starlark.Universe {
		if b, ok := v.(*starlark.Builtin); ok && k != "set" {
			out[k] = namingKeywords(b)
		}
	}
	return out
}
