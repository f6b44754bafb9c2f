// Command importgroups checks that Go files import in three groups, in
// this order, a blank line between them: the standard library, other
// modules, then socktrace's own packages. goimports -local sorts the
// imports of one block into these groups but leaves blocks that are
// already apart in any order; this catches that too. make lint runs it.
//
//	go run ./tools/importgroups FILE...
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
)

// project is the import path prefix of socktrace's own packages.
const project = "github.com/socktrace/socktrace"

// The groups, in the order they must come.
const (
	standard = iota
	other
	own
)

var groupNames = [...]string{"the standard library", "other modules", "socktrace's own packages"}

func main() {
	bad := 0
	for _, path := range os.Args[1:] {
		problems, err := check(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, p)
		}
		bad += len(problems)
	}
	if bad > 0 {
		os.Exit(1)
	}
}

// check parses one file's imports and returns what is out of order.
func check(path string) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, d := range f.Decls {
		if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.IMPORT {
			problems = append(problems, checkDecl(fset, gd)...)
		}
	}
	return problems, nil
}

// checkDecl checks one import declaration: groups never go back, a new
// group starts after a blank line, and no group is split in two.
func checkDecl(fset *token.FileSet, gd *ast.GenDecl) []string {
	var problems []string
	prevGroup, prevEnd := -1, 0
	for _, s := range gd.Specs {
		spec := s.(*ast.ImportSpec)
		pos := fset.Position(spec.Pos())
		if spec.Doc != nil {
			pos = fset.Position(spec.Doc.Pos())
		}
		g := groupOf(strings.Trim(spec.Path.Value, `"`))
		switch {
		case g < prevGroup:
			problems = append(problems, fmt.Sprintf("%s: %s imported after %s: want %s, then %s, then %s",
				pos, spec.Path.Value, groupNames[prevGroup], groupNames[standard], groupNames[other], groupNames[own]))
		case g > prevGroup && prevGroup >= 0 && pos.Line <= prevEnd+1:
			problems = append(problems, fmt.Sprintf("%s: %s starts %s: want a blank line before it", pos, spec.Path.Value, groupNames[g]))
		case g == prevGroup && pos.Line > prevEnd+1:
			problems = append(problems, fmt.Sprintf("%s: %s starts a second group of %s: want them in one", pos, spec.Path.Value, groupNames[g]))
		}
		prevGroup, prevEnd = max(prevGroup, g), fset.Position(spec.End()).Line
	}
	return problems
}

// groupOf tells an import path's group: the standard library's paths
// have no dot in their first element.
func groupOf(path string) int {
	switch first, _, _ := strings.Cut(path, "/"); {
	case path == project || strings.HasPrefix(path, project+"/"):
		return own
	case !strings.Contains(first, "."):
		return standard
	}
	return other
}
