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
        else context.report({ node, messageId: 'boundary', data: { file: context.filename, spec: '<dynamic>', why: 'dynamic import paths cannot be checked' } });
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

// Module-level mutable state in guest code: a `let`/`var`, or a `const`
// holding a fresh mutable object (new X, [], {}) that is not frozen, or a
// static class field that is not readonly. Guest state must live in guest
// memory so that a saved image is the whole guest.
function isFrozenOrConst(init) {
  if (!init) return false;
  if (init.type === 'TSAsExpression' && init.typeAnnotation.type === 'TSTypeReference' &&
      init.typeAnnotation.typeName.type === 'Identifier' && init.typeAnnotation.typeName.name === 'const') return true;
  if (init.type === 'TSAsExpression' || init.type === 'TSSatisfiesExpression') return isFrozenOrConst(init.expression);
  return init.type === 'CallExpression' && init.callee.type === 'MemberExpression' &&
    init.callee.object.type === 'Identifier' && init.callee.object.name === 'Object' &&
    init.callee.property.type === 'Identifier' && init.callee.property.name === 'freeze';
}

function unwrap(init) {
  while (init && (init.type === 'TSAsExpression' || init.type === 'TSSatisfiesExpression' || init.type === 'TSNonNullExpression')) init = init.expression;
  return init;
}

const noModuleState = {
  meta: {
    type: 'problem',
    docs: { description: 'no module-level mutable state in guest code' },
    messages: {
      letVar: 'module-level `{{kind}} {{name}}` in guest code: guest state lives in guest memory',
      mutable: 'module-level `const {{name}}` holds a mutable {{what}}: freeze it or keep it in guest memory',
      staticField: 'static class field `{{name}}` is module-level state: make it readonly or keep it in guest memory',
    },
    schema: [],
  },
  create(context) {
    const checkDecl = (decl) => {
      for (const d of decl.declarations) {
        const name = d.id.type === 'Identifier' ? d.id.name : '<pattern>';
        if (decl.kind !== 'const') {
          context.report({ node: d, messageId: 'letVar', data: { kind: decl.kind, name } });
          continue;
        }
        if (isFrozenOrConst(d.init)) continue;
        const init = unwrap(d.init);
        if (!init) continue;
        const what = init.type === 'NewExpression' ? `new ${init.callee.name ?? 'object'}` :
          init.type === 'ArrayExpression' ? 'array' : init.type === 'ObjectExpression' ? 'object' : null;
        if (what) context.report({ node: d, messageId: 'mutable', data: { name, what } });
      }
    };
    return {
      'Program > VariableDeclaration': checkDecl,
      'Program > ExportNamedDeclaration > VariableDeclaration': checkDecl,
      'PropertyDefinition[static=true]'(node) {
        if (!node.readonly) context.report({ node, messageId: 'staticField', data: { name: node.key.name ?? '?' } });
      },
    };
  },
};

export default {
  meta: { name: 'eslint-plugin-xenport' },
  rules: { 'layer-boundaries': layerBoundaries, 'no-module-state': noModuleState },
};
