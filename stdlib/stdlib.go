// Package stdlib holds voidbox's reusable .star libraries and the skill files they ship,
// embedded into the binary and loaded as "@stdlib//name.star".
package stdlib

import "embed"

// FS is the embedded library tree: *.star modules at the top, skill files under skills/.
//
//go:embed *.star skills
var FS embed.FS
