/** Types of build-state.mjs (plain JavaScript: bin/ runs before any TypeScript loader). */
export declare const STAMP: string
export declare function sourceDigest(root: string): string
export declare function builtDigest(root: string, outDir?: string): string | undefined
export declare function chooseEntry(root: string): 'dist' | 'source'
