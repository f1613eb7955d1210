// ESLint rules that enforce xenport's layer boundaries (docs/ARCHITECTURE.md).
//
//   guest   = sys/ arch/ dev/      may import guest code, hypervisor/public/, and `debug`
//   public  = hypervisor/public/   imports nothing outside itself
//   host    = hypervisor/ (rest)   never imports guest code
//
// Imports are resolved against the importing file's folder, so `../../x`
// is judged by where it lands, not by how it is spelled.
import path from 'node:path';
import { builtinModules } from 'node:module';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const BUILTINS = new Set(builtinModules);
const GUEST_PACKAGES = new Set(['debug']);

/** Layer of a project-relative path (posix separators). */
export function layerOf(rel) {
  if (/^(sys|arch|dev)(\/|$)/.test(rel)) return 'guest';
  if (/^hypervisor\/public(\/|$)/.test(rel)) return 'public';
  if (/^hypervisor(\/|$)/.test(rel)) return 'host';
  return 'other';
}

function relFromRoot(abs) {
  return path.relative(ROOT, abs).split(path.sep).join('/');
}

function checkImport(context, node, spec) {
  if (typeof spec !== 'string') return;
  const file = context.filename ?? context.getFilename();
  const fromRel = relFromRoot(path.resolve(ROOT, file));
  const from = layerOf(fromRel);
  if (from === 'other') return;
  const report = (why) => context.report({ node, messageId: 'boundary', data: { file: fromRel, spec, why } });

  if (!spec.startsWith('.') && !spec.startsWith('/')) {
    const bare = spec.startsWith('node:') ? spec.slice(5) : spec.split('/')[0];
    const isBuiltin = spec.startsWith('node:') || BUILTINS.has(bare);
    if (from === 'public') report('hypervisor/public/ imports nothing outside itself');
    else if (from === 'guest' && (isBuiltin || !GUEST_PACKAGES.has(spec)))
      report('guest code reaches the host only through hypervisor/public/ (no Node modules, no packages but debug)');
    return;
  }
  const target = relFromRoot(path.resolve(path.dirname(path.resolve(ROOT, file)), spec));
  const to = layerOf(target);
  if (from === 'guest' && to === 'host') report('guest code may import only hypervisor/public/ from the hypervisor side');
  else if (from === 'guest' && to === 'other') report('guest code may import only guest code and hypervisor/public/');
  else if (from === 'public' && to !== 'public') report('hypervisor/public/ imports nothing outside itself');
  else if (from === 'host' && to === 'guest') report('the hypervisor never imports guest code (kernels are loaded by name)');
}

const layerBoundaries = {
  meta: {
    type: 'problem',
    docs: { description: 'enforce the guest / public ABI / hypervisor layer boundaries' },
    messages: { boundary: '{{file}} imports "{{spec}}": {{why}}' },
    schema: [],
  },
  create(context) {
    const fromSource = (node) => {
      if (node.source && node.source.type === 'Literal') checkImport(context, node, node.source.value);
    };
    return {
      ImportDeclaration: fromSource,
      ExportAllDeclaration: fromSource,
      ExportNamedDeclaration: fromSource,
      ImportExpression(node) {
        if (node.source.type === 'Literal') checkImport(context, node, node.source.value);
        else {
          const file = relFromRoot(path.resolve(ROOT, context.filename));
          if (layerOf(file) !== 'other') context.report({ node, messageId: 'boundary', data: { file, spec: '<dynamic>', why: 'dynamic import paths cannot be checked' } });
        }
      },
      TSImportEqualsDeclaration(node) {
        if (node.moduleReference.type === 'TSExternalModuleReference') checkImport(context, node, node.moduleReference.expression.value);
      },
      CallExpression(node) {
        if (node.callee.type === 'Identifier' && node.callee.name === 'require' && node.arguments[0]?.type === 'Literal')
          checkImport(context, node, node.arguments[0].value);
      },
    };
  },
};

// Module-level mutable state in guest code (and in hypervisor/public/, which
// guest code runs): a `let`/`var` living at module scope, a binding or
// default export holding a fresh mutable object (new X, [], {}, an IIFE's
// closure, Object.create/assign/fromEntries, Array/Array.from/of,
// structuredClone) that is not deeply frozen or `as const`, a static class
// field that is not readonly or holds such an object, or a top-level
// assignment. Guest state must live in guest memory so that a saved image is
// the whole guest.
const MUTABLE_FACTORIES = new Set(['Object.create', 'Object.assign', 'Object.fromEntries', 'Array', 'Array.from', 'Array.of', 'structuredClone']);

function unwrap(init) {
  while (init && (init.type === 'TSAsExpression' || init.type === 'TSSatisfiesExpression' || init.type === 'TSNonNullExpression')) init = init.expression;
  return init;
}

function isAsConst(node) {
  return node.type === 'TSAsExpression' && node.typeAnnotation.type === 'TSTypeReference' &&
    node.typeAnnotation.typeName.type === 'Identifier' && node.typeAnnotation.typeName.name === 'const';
}

function calleeName(callee) {
  if (callee.type === 'Identifier') return callee.name;
  if (callee.type === 'MemberExpression' && !callee.computed && callee.object.type === 'Identifier' && callee.property.type === 'Identifier')
    return `${callee.object.name}.${callee.property.name}`;
  return undefined;
}

/** What fresh mutable thing `init` makes, or null. */
function mutableWhat(init) {
  const e = unwrap(init);
  if (!e) return null;
  if (e.type === 'NewExpression') return `new ${e.callee.name ?? 'object'}`;
  if (e.type === 'ArrayExpression') return 'array';
  if (e.type === 'ObjectExpression') return 'object';
  if (e.type === 'CallExpression') {
    if (e.callee.type === 'FunctionExpression' || e.callee.type === 'ArrowFunctionExpression') return 'closure (IIFE)';
    const name = calleeName(e.callee);
    if (name !== undefined && MUTABLE_FACTORIES.has(name)) return `result of ${name}()`;
    if (name === 'Object.freeze' && !isFrozenOrConst(e)) return 'shallowly frozen value (Map/Set contents and nested literals stay mutable)';
  }
  return null;
}

/** `x as const`, or Object.freeze of a literal whose nested literals are frozen too. */
function isFrozenOrConst(init) {
  if (!init) return false;
  if (isAsConst(init)) return true;
  if (init.type === 'TSAsExpression' || init.type === 'TSSatisfiesExpression') return isFrozenOrConst(init.expression);
  if (!(init.type === 'CallExpression' && calleeName(init.callee) === 'Object.freeze')) return false;
  const arg = init.arguments[0];
  if (!arg || isAsConst(arg)) return Boolean(arg);
  const lit = unwrap(arg);
  const values = lit.type === 'ObjectExpression' ? lit.properties.map((p) => (p.type === 'Property' ? p.value : p)) :
    lit.type === 'ArrayExpression' ? lit.elements.filter(Boolean) : null;
  if (values === null) return mutableWhat(lit) === null;
  // A spread is judged by what it spreads: another binding (checked where it
  // is declared, like any identifier) is fine; a fresh mutable literal is not.
  const judged = (v) => (v.type === 'SpreadElement' ? v.argument : v);
  return values.every((v) => mutableWhat(judged(v)) === null || isFrozenOrConst(judged(v)));
}

const noModuleState = {
  meta: {
    type: 'problem',
    docs: { description: 'no module-level mutable state in guest code' },
    messages: {
      letVar: 'module-level `{{kind}} {{name}}` in guest code: guest state lives in guest memory',
      mutable: 'module-level `const {{name}}` holds a mutable {{what}}: freeze it or keep it in guest memory',
      staticField: 'static class field `{{name}}` is module-level state: make it readonly or keep it in guest memory',
      staticMutable: 'static class field `{{name}}` holds a mutable {{what}}: freeze it or keep it in guest memory',
      assign: 'module-level assignment in guest code: guest state lives in guest memory',
    },
    schema: [],
  },
  create(context) {
    const checkDecl = (decl) => {
      if (decl.declare) return;
      for (const d of decl.declarations) {
        const name = d.id.type === 'Identifier' ? d.id.name : '<pattern>';
        if (decl.kind !== 'const') {
          context.report({ node: d, messageId: 'letVar', data: { kind: decl.kind, name } });
          continue;
        }
        if (isFrozenOrConst(d.init)) continue;
        const what = mutableWhat(d.init);
        if (what) context.report({ node: d, messageId: 'mutable', data: { name, what } });
      }
    };
    return {
      'Program > VariableDeclaration': checkDecl,
      'Program > ExportNamedDeclaration > VariableDeclaration': checkDecl,
      'TSModuleBlock > VariableDeclaration': checkDecl,
      'TSModuleBlock > ExportNamedDeclaration > VariableDeclaration': checkDecl,
      'VariableDeclaration[kind="var"]'(node) {
        const parent = node.parent.type === 'ExportNamedDeclaration' ? node.parent.parent : node.parent;
        if (parent.type === 'Program' || parent.type === 'TSModuleBlock') return; // checkDecl has it
        if (context.sourceCode.getScope(node).variableScope.type !== 'module') return;
        for (const d of node.declarations)
          context.report({ node: d, messageId: 'letVar', data: { kind: 'var', name: d.id.type === 'Identifier' ? d.id.name : '<pattern>' } });
      },
      'Program > ExportDefaultDeclaration'(node) {
        const what = isFrozenOrConst(node.declaration) ? null : mutableWhat(node.declaration);
        if (what) context.report({ node, messageId: 'mutable', data: { name: 'default', what } });
      },
      'Program > ExpressionStatement > AssignmentExpression, Program > ExpressionStatement > UpdateExpression'(node) {
        context.report({ node, messageId: 'assign' });
      },
      'PropertyDefinition[static=true]'(node) {
        const name = node.key.name ?? '?';
        if (!node.readonly) context.report({ node, messageId: 'staticField', data: { name } });
        else if (!isFrozenOrConst(node.value)) {
          const what = mutableWhat(node.value);
          if (what) context.report({ node, messageId: 'staticMutable', data: { name, what } });
        }
      },
    };
  },
};

export default {
  meta: { name: 'eslint-plugin-xenport' },
  rules: { 'layer-boundaries': layerBoundaries, 'no-module-state': noModuleState },
};
